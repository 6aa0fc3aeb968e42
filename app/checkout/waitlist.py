"""The waitlist of a sold-out ticket type: join, leave, and promotion of freed seats.

Freed seats do not go back on open sale while people wait: the expiry of holds
(offers that ran out included) and the buyer's release promote the waitlist in the
same transaction, so the seats pass straight from `held` by one hold to `held` by
an offer hold and `available` never shows them. Seats freed elsewhere (a Stripe
session ending, a raised capacity) are promoted by a sweep within 30 seconds.

An offer is an ordinary hold (status active, counted in `held`) that lasts
WAITLIST_OFFER_MINUTES and is confirmed through the usual checkout page; when it
expires unclaimed, the expiry promotes the next person. In queue order, each person
is offered what they asked for, or the seats left when fewer are free.

Race safety, the same way as the holds: promotion first takes the ticket type's
counter row (a no-op UPDATE: the row lock on PostgreSQL, the writer lock on
SQLite), so promotions of one ticket type run one after the other and read fresh
counters; the waiting entries are then claimed with SKIP LOCKED (one being left
right now is skipped), the seats moved with the conditional UPDATE of hold_seats
(`sold + held + n <= capacity`, backed by the CHECK), and each entry flips from
waiting to offered only if it is still waiting. A seat is offered once; capacity
holds whatever runs at the same time.
"""
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from app.checkout import services
from app.errors import DomainError, NotFound
from app.extensions import db
from app.models import Hold, HoldStatus, TicketType, WaitlistEntry, WaitlistStatus
from app.models.base import new_id, utcnow


@dataclass
class WaitlistState:
    """What the event page shows a signed-in person about one ticket type."""
    entry: WaitlistEntry | None = None     # their place in the queue
    position: int | None = None
    hold: Hold | None = None               # seats reserved for them now (an offer or their own checkout)


def _active_hold(user_id, ticket_type_id, now):
    # The time is checked here, not in SQL: a range on expires_at would lure SQLite
    # onto the index of every active hold (a drop's thousands) instead of the user's.
    holds = db.session.scalars(select(Hold).where(
        Hold.user_id == user_id, Hold.ticket_type_id == ticket_type_id, Hold.status == HoldStatus.ACTIVE)
        .order_by(Hold.created_at.desc())).all()
    return next((hold for hold in holds if hold.expires_at > now), None)


def _waiting_entry(user_id, ticket_type_id):
    return db.session.scalar(select(WaitlistEntry).where(
        WaitlistEntry.user_id == user_id, WaitlistEntry.ticket_type_id == ticket_type_id,
        WaitlistEntry.status == WaitlistStatus.WAITING))


def join_waitlist(user, ticket_type_id, raw_quantity, now=None):
    """Queue the user for a sold-out ticket type. Flushes; the caller commits."""
    now = now or utcnow()
    terms = services.sale_terms(ticket_type_id)
    quantity = services.parse_quantity(raw_quantity, terms)
    services.check_on_sale(terms, now)
    if terms.available > 0:
        raise DomainError("This ticket is not sold out: you can buy it now.", 409)
    if _active_hold(user.id, ticket_type_id, now):
        raise DomainError("Seats are already reserved for you: complete your checkout.", 409)
    if _waiting_entry(user.id, ticket_type_id):
        raise DomainError("You are already on the waitlist for this ticket.", 409)
    entry = WaitlistEntry(ticket_type_id=ticket_type_id, event_id=terms.event_id, user_id=user.id,
                          quantity=quantity, created_at=now)
    db.session.add(entry)
    try:
        db.session.flush()
    except IntegrityError:  # a double submit: the partial unique index let one through
        raise DomainError("You are already on the waitlist for this ticket.", 409) from None
    # Seats freed since the sold-out read (and promoted before this entry existed) go
    # to the queue now rather than sit on open sale.
    promote_waitlist(ticket_type_id, now)
    return entry


def own_entry(user, entry_id):
    entry = db.session.get(WaitlistEntry, entry_id)
    if entry is None or entry.user_id != user.id:
        raise NotFound("There is no such waitlist entry.")  # someone else's looks like none
    return entry


def leave_waitlist(user, entry_id, now=None):
    now = now or utcnow()
    entry = own_entry(user, entry_id)
    left = db.session.execute(
        update(WaitlistEntry).where(WaitlistEntry.id == entry.id, WaitlistEntry.status == WaitlistStatus.WAITING)
        .values(status=WaitlistStatus.LEFT, ended_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if not left:
        raise DomainError("You are no longer waiting: seats were offered to you, or you left already.", 409)
    return entry


def position(entry):
    """1 for the first in line."""
    ahead = db.session.scalar(select(func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.ticket_type_id == entry.ticket_type_id, WaitlistEntry.status == WaitlistStatus.WAITING,
        or_(WaitlistEntry.created_at < entry.created_at,
            and_(WaitlistEntry.created_at == entry.created_at, WaitlistEntry.id < entry.id))))
    return ahead + 1


def waitlist_state(user, ticket_type, now=None):
    now = now or utcnow()
    state = WaitlistState(hold=_active_hold(user.id, ticket_type.id, now))
    state.entry = _waiting_entry(user.id, ticket_type.id)
    if state.entry:
        state.position = position(state.entry)
    return state


def promote_waitlist(ticket_type_id, now=None):
    """Turn this ticket type's free seats into offers for the first in line. Returns the new holds.

    In the caller's transaction, right after whatever freed the seats; the caller
    commits, then notify_waitlist_offers() mails the offers and schedules their expiry.
    In queue order, each person is offered what they asked for, or the seats that are
    left when fewer are free, until no seat or nobody is left: after a promotion
    either nothing is available or nobody waits.
    """
    now = now or utcnow()
    waiting = (WaitlistEntry.ticket_type_id == ticket_type_id, WaitlistEntry.status == WaitlistStatus.WAITING)
    if db.session.scalar(select(WaitlistEntry.id).where(*waiting).limit(1)) is None:
        return []  # the common case, without taking any lock
    # The counter row first: promotions of a ticket type queue up here, and the
    # counters it returns are the committed ones (READ COMMITTED re-reads after the wait).
    counters = db.session.execute(
        update(TicketType).where(TicketType.id == ticket_type_id).values(held=TicketType.held)
        .returning(TicketType.capacity, TicketType.sold, TicketType.held)
        .execution_options(synchronize_session=False)).first()
    if counters is None:
        return []
    free = counters.capacity - counters.sold - counters.held
    if free <= 0:
        return []
    terms = services.sale_terms(ticket_type_id)
    try:
        services.check_on_sale(terms, now)
    except DomainError:
        return []  # sales closed: nothing to offer
    # Someone already holding seats of this type (their own checkout) keeps their place for later.
    holding = exists().where(Hold.user_id == WaitlistEntry.user_id, Hold.ticket_type_id == ticket_type_id,
                             Hold.status == HoldStatus.ACTIVE)
    entries = db.session.execute(
        select(WaitlistEntry.id, WaitlistEntry.user_id, WaitlistEntry.quantity)
        .where(*waiting, ~holding)
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
        .limit(free)  # each offer takes at least one seat
        .with_for_update(skip_locked=True, of=WaitlistEntry)).all()
    offers = []
    for entry in entries:
        if free == 0:
            break
        quantity = min(entry.quantity, free)
        free -= quantity
        offers.append((entry, quantity))
    if not offers:
        return []
    seats = sum(quantity for _, quantity in offers)
    taken = db.session.execute(
        update(TicketType)
        .where(TicketType.id == ticket_type_id, TicketType.sold + TicketType.held + seats <= TicketType.capacity)
        .values(held=TicketType.held + seats)
        .execution_options(synchronize_session=False)).rowcount
    if not taken:
        return []  # cannot happen while we hold the counter row; the CHECK would refuse anyway
    expires_at = now + timedelta(minutes=current_app.config["WAITLIST_OFFER_MINUTES"])
    holds = [Hold(id=new_id(), ticket_type_id=ticket_type_id, event_id=terms.event_id, user_id=entry.user_id,
                  quantity=quantity, status=HoldStatus.ACTIVE, expires_at=expires_at, created_at=now)
             for entry, quantity in offers]
    db.session.add_all(holds)
    db.session.flush()
    for (entry, _), hold in zip(offers, holds):
        offered = db.session.execute(
            update(WaitlistEntry).where(WaitlistEntry.id == entry.id, WaitlistEntry.status == WaitlistStatus.WAITING)
            .values(status=WaitlistStatus.OFFERED, hold_id=hold.id, offered_at=now)
            .execution_options(synchronize_session=False)).rowcount
        if not offered:
            # The row is locked by us (PostgreSQL) or the database is (SQLite): a change
            # here means the locking is broken. Undo everything rather than offer twice.
            raise RuntimeError(f"waitlist entry {entry.id} changed while locked")
    return holds


def ticket_types_to_promote(limit=500):
    """Ticket types with people waiting and seats free (freed by a path that does not
    promote: a Stripe session ending, an organiser raising capacity): for the sweep."""
    # Driven by the waiting entries (the partial unique index holds only those), not
    # by every ticket type ever sold.
    return db.session.scalars(
        select(WaitlistEntry.ticket_type_id).distinct()
        .join(TicketType, TicketType.id == WaitlistEntry.ticket_type_id)
        .where(WaitlistEntry.status == WaitlistStatus.WAITING,
               TicketType.sold + TicketType.held < TicketType.capacity)
        .order_by(WaitlistEntry.ticket_type_id).limit(limit)).all()


def claim_offer_notices(now=None, limit=200):
    """Offers whose e-mail has not gone out, each claimed once (conditional UPDATE), with
    their hold, user, ticket type and event loaded. The caller commits, then sends."""
    now = now or utcnow()
    pending = WaitlistEntry.status == WaitlistStatus.OFFERED, WaitlistEntry.notified_at.is_(None)
    ids = db.session.scalars(select(WaitlistEntry.id).where(*pending)
                             .order_by(WaitlistEntry.offered_at).limit(limit)).all()
    if not ids:
        return []  # the common case, read-only
    claimed = db.session.execute(
        update(WaitlistEntry).where(WaitlistEntry.id.in_(ids), *pending).values(notified_at=now)
        .returning(WaitlistEntry.id).execution_options(synchronize_session=False)).scalars().all()
    if not claimed:
        return []
    return db.session.scalars(
        select(WaitlistEntry).where(WaitlistEntry.id.in_(claimed))
        .options(joinedload(WaitlistEntry.hold), joinedload(WaitlistEntry.user),
                 joinedload(WaitlistEntry.ticket_type), joinedload(WaitlistEntry.event))
        .order_by(WaitlistEntry.offered_at)).unique().all()
