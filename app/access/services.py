"""Who may do what on an event, and how people get in.

One function answers "may this user do P on this event (and room)?":
event_permissions(). It resolves account ownership, grants and role inheritance,
once per request. Nothing compares role names.
"""
import hashlib
import secrets
from datetime import timedelta

from flask import current_app, g
from sqlalchemy import and_, delete, event as sa_event, exists, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from app.errors import DomainError, Forbidden, NotFound
from app.extensions import db, redis
from app.models import (AccessGrant, AccountOwner, Event, EventStatus, GrantSource, Invitation,
                        PendingProfile, Permission, Role, RoleInheritance, RolePermission, Room)
from app.models.base import utcnow


# --- roles and permissions -------------------------------------------------

def all_permissions():
    return frozenset(db.session.scalars(select(Permission.key)))


def role_permissions():
    """{role id: every permission the role has, through inheritance}. Once per request."""
    if "role_permissions" in g:
        return g.role_permissions
    direct = {}
    for role_id, key in db.session.execute(select(RolePermission.role_id, RolePermission.permission_key)):
        direct.setdefault(role_id, set()).add(key)
    parents = {}
    for role_id, inherits_id in db.session.execute(select(RoleInheritance.role_id, RoleInheritance.inherits_id)):
        parents.setdefault(role_id, set()).add(inherits_id)
    resolved = {}

    def resolve(role_id, seen=()):
        if role_id in resolved:
            return resolved[role_id]
        if role_id in seen:  # the graph is kept acyclic; never loop if it were not
            return frozenset()
        keys = set(direct.get(role_id, ()))
        for parent in parents.get(role_id, ()):
            keys |= resolve(parent, (*seen, role_id))
        resolved[role_id] = frozenset(keys)
        return resolved[role_id]

    role_ids = db.session.scalars(select(Role.id)).all()
    g.role_permissions = {role_id: resolve(role_id) for role_id in role_ids}
    return g.role_permissions


def add_role_inheritance(role_id, inherits_id):
    """Let role_id inherit inherits_id, unless that would close a cycle."""
    if role_id == inherits_id or _inherits(inherits_id, role_id):
        raise DomainError("A role cannot inherit from itself, directly or through others.", 422)
    db.session.add(RoleInheritance(role_id=role_id, inherits_id=inherits_id))
    db.session.flush()
    # Both memos derive from the inheritance graph; the rest of the request must see the change.
    g.pop("role_permissions", None)
    g.pop("event_permissions", None)


def _inherits(role_id, ancestor_id):
    """True when role_id already inherits ancestor_id (at any depth)."""
    pending, seen = [role_id], set()
    while pending:
        current = pending.pop()
        if current == ancestor_id:
            return True
        if current in seen:
            continue
        seen.add(current)
        pending.extend(db.session.scalars(select(RoleInheritance.inherits_id)
                                          .where(RoleInheritance.role_id == current)))
    return False


def roles_by_rank():
    return db.session.scalars(select(Role).order_by(Role.rank.desc())).all()


# --- the permission engine --------------------------------------------------

def owns_account(user, account_id):
    return bool(db.session.scalar(select(exists().where(
        AccountOwner.account_id == account_id, AccountOwner.user_id == user.id))))


def event_permissions(user, event, room_id=None):
    """Every permission the user holds on the event, or on one room of it.

    Account owners hold all. Otherwise the user's event-wide grants count, and
    for a room question that room's grants too. Memoised for the request.
    """
    if user is None or not user.is_authenticated:
        return frozenset()
    cache = g.setdefault("event_permissions", {})
    key = (user.id, event.id, room_id)
    if key not in cache:
        if owns_account(user, event.account_id):
            cache[key] = all_permissions()
        else:
            scope = AccessGrant.room_id.is_(None)
            if room_id is not None:
                scope = or_(scope, AccessGrant.room_id == room_id)
            role_ids = db.session.scalars(select(AccessGrant.role_id).where(
                AccessGrant.event_id == event.id, AccessGrant.user_id == user.id, scope)).all()
            by_role = role_permissions()
            cache[key] = frozenset().union(*(by_role.get(r, frozenset()) for r in role_ids))
    return cache[key]


def can(user, permission, event, room_id=None):
    return permission in event_permissions(user, event, room_id)


def is_on_team(user, event):
    """Owners of the account, or anyone holding a grant on the event."""
    if user is None or not user.is_authenticated:
        return False
    return owns_account(user, event.account_id) or bool(db.session.scalar(select(exists().where(
        AccessGrant.event_id == event.id, AccessGrant.user_id == user.id))))


def event_for(user, event_id, permission, room_id=None):
    """The event, if the user may do `permission` on it.

    404 for someone with no tie to the event (no hint it exists), 403 for a
    team member who lacks the permission.
    """
    event = db.session.get(Event, event_id)
    if event is None or not is_on_team(user, event):
        raise NotFound("There is no such event, or it is not yours.")
    if not can(user, permission, event, room_id):
        raise Forbidden("Your role on this event does not allow that.")
    return event


def grantable_roles(user, event):
    """Roles the user may hand out: none with a permission they do not hold."""
    mine = event_permissions(user, event)
    by_role = role_permissions()
    return [role for role in roles_by_rank() if by_role.get(role.id, frozenset()) <= mine]


def _require_grantable(user, event, role_id):
    if role_id not in {role.id for role in grantable_roles(user, event)}:
        raise Forbidden("You cannot give a role with more rights than your own.")


def _room_of(event, room_id):
    if not room_id:
        return None
    room = db.session.get(Room, room_id)
    if room is None or room.event_id != event.id:
        raise DomainError("That room is not part of this event.", 422)
    return room


# --- grants and the participants list ---------------------------------------

def mark_participants_changed(event_id):
    """Note the change; the cached list is dropped once the transaction commits."""
    db.session.info.setdefault("participants_changed", set()).add(event_id)


@sa_event.listens_for(Session, "after_commit")
def _drop_participant_caches(session):
    for event_id in session.info.pop("participants_changed", ()):
        redis.incr(f"participants-version:{event_id}")


@sa_event.listens_for(Session, "after_rollback")
def _forget_participant_changes(session):
    session.info.pop("participants_changed", None)


def grant_role(event, role_id, *, user=None, pending_profile=None, room_id=None,
               source=GrantSource.MANUAL, source_ref=None, granted_by=None):
    """Give a role; the same role from the same source twice is one grant."""
    _room_of(event, room_id)
    if db.session.get(Role, role_id) is None:
        raise DomainError("There is no such role.", 422)
    holder = (AccessGrant.user_id == user.id) if user else (AccessGrant.pending_profile_id == pending_profile.id)
    room = AccessGrant.room_id.is_(None) if room_id is None else AccessGrant.room_id == room_id
    existing = db.session.scalar(select(AccessGrant).where(
        AccessGrant.event_id == event.id, holder, room, AccessGrant.role_id == role_id,
        AccessGrant.source == source))
    if existing:
        return existing
    grant = AccessGrant(event_id=event.id, role_id=role_id, room_id=room_id, source=source,
                        source_ref=source_ref, user_id=user.id if user else None,
                        pending_profile_id=pending_profile.id if pending_profile else None,
                        granted_by_id=granted_by.id if granted_by else None)
    db.session.add(grant)
    db.session.flush()
    mark_participants_changed(event.id)
    return grant


def grant_manually(event, granted_by, role_id, *, email=None, phone=None, room_id=None):
    """An organiser gives someone a role directly (no link to accept)."""
    _require_grantable(granted_by, event, role_id)
    user, profile = person_for(email=email, phone=phone)
    return grant_role(event, role_id, user=user, pending_profile=profile, room_id=room_id,
                      source=GrantSource.MANUAL, granted_by=granted_by)


def revoke_grant(event, grant_id, revoked_by):
    grant = db.session.get(AccessGrant, grant_id)
    if grant is None or grant.event_id != event.id:
        raise NotFound("That access is already gone.")
    _require_grantable(revoked_by, event, grant.role_id)
    if grant.user_id == revoked_by.id and not owns_account(revoked_by, event.account_id):
        raise DomainError("You cannot revoke your own access; ask another organiser.", 422)
    # An unused invitation behind the grant would otherwise hand the role straight back.
    db.session.execute(update(Invitation).where(
        Invitation.grant_id == grant.id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
        .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
    db.session.delete(grant)
    db.session.flush()
    mark_participants_changed(event.id)


# --- pending profiles ---------------------------------------------------------

def person_for(email=None, phone=None):
    """(user, None) for someone with an account, else (None, their pending profile)."""
    from app.models import User

    column, value = (User.email, email) if email else (User.phone, phone)
    user = db.session.scalar(select(User).where(column == value))
    if user:
        return user, None
    profile_column = PendingProfile.email if email else PendingProfile.phone
    profile = db.session.scalar(select(PendingProfile).where(profile_column == value))
    if profile is None:
        profile = PendingProfile(email=email, phone=phone)
        db.session.add(profile)
        db.session.flush()
    return None, profile


def merge_pending_profiles(user):
    """At sign-in: profiles with the user's e-mail or phone become the user's.

    Idempotent: a profile is deleted once its grants have moved, so a second run
    finds nothing.
    """
    conditions = []
    if user.email:
        conditions.append(PendingProfile.email == user.email)
    if user.phone:
        conditions.append(PendingProfile.phone == user.phone)
    if not conditions:
        return 0
    profiles = db.session.scalars(select(PendingProfile).where(or_(*conditions))).all()
    for profile in profiles:
        _move_grants(profile, user)
        db.session.delete(profile)
    db.session.flush()
    return len(profiles)


def _move_grants(profile, user):
    event_ids = db.session.scalars(select(AccessGrant.event_id).where(
        AccessGrant.pending_profile_id == profile.id).distinct()).all()
    db.session.execute(
        update(AccessGrant).where(AccessGrant.pending_profile_id == profile.id)
        .values(user_id=user.id, pending_profile_id=None)
        .execution_options(synchronize_session=False))
    for event_id in event_ids:
        mark_participants_changed(event_id)


# --- invitations ----------------------------------------------------------------

def _token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def invite(event, invited_by, role_id, *, email=None, phone=None, room_id=None):
    """Invite someone by e-mail or phone. Returns (invitation, token): the token
    goes into the link and is never stored."""
    _require_grantable(invited_by, event, role_id)
    user, profile = person_for(email=email, phone=phone)
    token = secrets.token_urlsafe(32)
    invitation = Invitation(event_id=event.id, role_id=role_id, room_id=room_id, email=email, phone=phone,
                            token_hash=_token_hash(token), invited_by_id=invited_by.id,
                            expires_at=utcnow() + timedelta(days=current_app.config["INVITATION_TTL_DAYS"]))
    db.session.add(invitation)
    db.session.flush()  # gives the invitation its id, which the grant records as its source
    grant = grant_role(event, role_id, user=user, pending_profile=profile, room_id=room_id,
                       source=GrantSource.INVITATION, source_ref=invitation.id, granted_by=invited_by)
    invitation.grant_id = grant.id
    db.session.flush()
    return invitation, token


INVITATION_STATUSES = ("pending", "accepted", "expired", "revoked")


def _invitation_status_is(status, now):
    """SQL twin of Invitation.status()."""
    open_ = (Invitation.revoked_at.is_(None), Invitation.accepted_at.is_(None))
    return {
        "revoked": Invitation.revoked_at.is_not(None),
        "accepted": and_(Invitation.revoked_at.is_(None), Invitation.accepted_at.is_not(None)),
        "expired": and_(*open_, Invitation.expires_at <= now),
        "pending": and_(*open_, Invitation.expires_at > now),
    }[status]


def list_invitations(event, query="", status=None, page=1, page_size=20):
    """(one page of the event's invitations, newest first; their total; the page shown,
    which is the last one when `page` is past the end).

    `query` matches the e-mail or phone; `status` is one of INVITATION_STATUSES.
    """
    conditions = [Invitation.event_id == event.id]
    if query:
        contact = func.lower(func.coalesce(Invitation.email, "") + " " + func.coalesce(Invitation.phone, ""))
        conditions.append(contact.contains(query.lower(), autoescape=True))
    if status:
        conditions.append(_invitation_status_is(status, utcnow()))
    total = db.session.scalar(select(func.count()).select_from(Invitation).where(*conditions))
    page = min(page, max((total + page_size - 1) // page_size, 1))
    invitations = db.session.scalars(
        select(Invitation).where(*conditions)
        .options(selectinload(Invitation.role), selectinload(Invitation.room), selectinload(Invitation.invited_by))
        .order_by(Invitation.created_at.desc(), Invitation.id)
        .limit(page_size).offset((page - 1) * page_size)).all()
    return invitations, total, page


def invitation_by_token(token):
    invitation = db.session.scalar(select(Invitation).where(Invitation.token_hash == _token_hash(token or "")))
    if invitation is None:
        raise NotFound("This invitation link is not valid. Check that you copied all of it.")
    return invitation


def check_invitation_usable(invitation):
    status = invitation.status(utcnow())
    if status == "revoked":
        raise DomainError("This invitation was withdrawn by the organiser.", 410)
    if status == "expired":
        raise DomainError("This invitation has expired. Ask the organiser for a new one.", 410)
    if status == "accepted":
        raise DomainError("This invitation has already been used.", 409)


def accept_invitation(token, user):
    """Use the link once: the invitation's grant becomes the user's.

    Spent by a conditional UPDATE, so two clicks at once accept it once. The spend
    comes before anything else is read: a click that loses the race is told the link
    was used, not something it read while the winner was committing. A refusal after
    it rolls back with the request, the spend included.
    """
    invitation = invitation_by_token(token)
    check_invitation_usable(invitation)
    spent = db.session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None),
               Invitation.revoked_at.is_(None), Invitation.expires_at > utcnow())
        .values(accepted_at=utcnow(), accepted_by_id=user.id)
        .execution_options(synchronize_session=False)).rowcount
    if not spent:
        raise DomainError("This invitation has already been used.", 409)
    grant = db.session.get(AccessGrant, invitation.grant_id) if invitation.grant_id else None
    if grant is not None and grant.user_id is not None and grant.user_id != user.id:
        raise Forbidden("This invitation was sent to someone else. Sign in with the address it was sent to.")
    if grant is None:  # the grant went with its holder's account: give the role again
        grant = grant_role(invitation.event, invitation.role_id, user=user, room_id=invitation.room_id,
                           source=GrantSource.INVITATION, source_ref=invitation.id)
    elif grant.pending_profile_id is not None:
        # Only this invitation's grant: the link is not a claim on everything else the
        # profile holds (other invitations, tickets); those wait for its e-mail or phone.
        grant.user_id, grant.pending_profile_id = user.id, None
        mark_participants_changed(grant.event_id)
    db.session.flush()
    db.session.refresh(invitation)
    return invitation


def revoke_invitation(event, invitation_id, revoked_by):
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None or invitation.event_id != event.id:
        raise NotFound("There is no such invitation.")
    _require_grantable(revoked_by, event, invitation.role_id)
    if invitation.accepted_at:
        raise DomainError("This invitation was already accepted. Revoke the person's access instead.", 409)
    if invitation.revoked_at:
        return invitation
    invitation.revoked_at = utcnow()
    if invitation.grant_id:
        # A repeated invitation reuses the grant an earlier one created (grant_role is
        # idempotent): only a grant this invitation made goes with it.
        db.session.execute(delete(AccessGrant).where(AccessGrant.id == invitation.grant_id,
                                                     AccessGrant.source_ref == invitation.id))
        invitation.grant_id = None
        mark_participants_changed(event.id)
    db.session.flush()
    return invitation


# --- the people's side ------------------------------------------------------------

def events_of_user(user):
    """[(event, [role names])] where the user holds grants, soonest first."""
    rows = db.session.execute(
        select(Event, Role.name).join(AccessGrant, AccessGrant.event_id == Event.id)
        .join(Role, Role.id == AccessGrant.role_id)
        .where(AccessGrant.user_id == user.id, Event.status != EventStatus.ARCHIVED)
        .order_by(Event.starts_at, Role.rank.desc())).all()
    grouped = {}
    for event, role_name in rows:
        grouped.setdefault(event, [])
        if role_name not in grouped[event]:
            grouped[event].append(role_name)
    return list(grouped.items())
