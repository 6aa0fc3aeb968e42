"""The stage's rules: the backstage queue, vetting, stage slots and stage events.

A person with "stage.appear" joins a room's queue (one active entry per person
and room, a partial unique index). A host ("stage.manage") opens a vetting with
the next person or a chosen one: a private conversation (vet_messages, read by
that person and the stage managers only) and a camera check in the event's
backstage room, where the person's LiveKit token may publish while vetted. The
host approves (with an optional note and timer) or rejects.

Stage slots, race-proof: an appearance row holds slot_no while current (ended_at
NULL), and the partial unique index stage_appearances_one_per_slot_idx allows one
current appearance per (room, slot). Taking a slot first locks: the entry's
conditional UPDATE takes SQLite's single writer lock (the whole take runs under
it), and on PostgreSQL a transaction-scoped advisory lock per room serialises
the takes of that room. Then the free slot below rooms.stage_slots is counted and
inserted. Without the lock the unique index still refuses a second person in a
slot; with it, a host who loses the race hears "the stage is full" instead of an
error. All of a stage change (entry, appearance, stage event) is in the live
database, so it commits as one transaction.

Stage events carry the offset from the recording start when a recording runs:
its start is read from Redis (recording_started_key), which LiveKit's
egress_started webhook sets; no recording running, NULL offset.

Services flush and never commit; the announce_*/after_* helpers run after the
route's commit (Redis fan-out, LiveKit permission, the timer job).
"""
import hashlib
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text, update

from app.access.services import can
from app.errors import DomainError, NotFound
from app.extensions import db, redis
from app.integrations import livekit
from app.models import Room, RoomKind, User
from app.models.base import utcnow
from app.models.live import (ACTIVE_ENTRY_STATUSES, StageAppearance, StageEntryStatus as S, StageEvent,
                             StageQueueEntry, VetMessage)
from app.rooms.services import publish

log = logging.getLogger(__name__)

MAX_NOTE = 500
MAX_BODY = 500
MAX_TIMER_MINUTES = 120
VETTABLE = (S.WAITING, S.VETTING)


class StageFull(DomainError):
    status = 409


def recording_started_key(room_id):
    """ISO time the room's current recording started: LiveKit's egress_started webhook
    sets it, egress_ended clears it (app/rooms/livekit_routes.py)."""
    return f"recording:room:{room_id}:started"


# --- reading -------------------------------------------------------------------------

def is_stage_room(room):
    return room.kind != RoomKind.BACKSTAGE


def require_stage_room(room):
    if not is_stage_room(room):
        raise DomainError("The backstage room has no stage of its own; queue from the main room.", 409)


def active_entry(room_id, user_id):
    return db.session.scalar(select(StageQueueEntry).where(
        StageQueueEntry.room_id == room_id, StageQueueEntry.user_id == user_id,
        StageQueueEntry.status.in_(ACTIVE_ENTRY_STATUSES)))


def latest_entry(room_id, user_id):
    """The person's active entry, else their last one (to show a rejection note)."""
    return active_entry(room_id, user_id) or db.session.scalar(
        select(StageQueueEntry).where(StageQueueEntry.room_id == room_id, StageQueueEntry.user_id == user_id)
        .order_by(StageQueueEntry.created_at.desc()).limit(1))


def queue(room_id):
    """Everyone backstage who is not on stage, in queue order."""
    return db.session.scalars(select(StageQueueEntry).where(
        StageQueueEntry.room_id == room_id,
        StageQueueEntry.status.in_((S.WAITING, S.VETTING, S.APPROVED)))
        .order_by(StageQueueEntry.created_at, StageQueueEntry.id)).all()


def position(entry):
    """1 for the next person among those waiting; None when not waiting."""
    if entry is None or entry.status != S.WAITING:
        return None
    ahead = db.session.scalar(select(func.count()).select_from(StageQueueEntry).where(
        StageQueueEntry.room_id == entry.room_id, StageQueueEntry.status == S.WAITING,
        (StageQueueEntry.created_at < entry.created_at)
        | ((StageQueueEntry.created_at == entry.created_at) & (StageQueueEntry.id < entry.id))))
    return ahead + 1


def on_stage(room_id):
    return db.session.scalars(select(StageAppearance).where(
        StageAppearance.room_id == room_id, StageAppearance.ended_at.is_(None))
        .order_by(StageAppearance.slot_no)).all()


def current_appearance(room_id, user_id):
    return db.session.scalar(select(StageAppearance).where(
        StageAppearance.room_id == room_id, StageAppearance.user_id == user_id,
        StageAppearance.ended_at.is_(None)))


def vet_messages(entry_id):
    return db.session.scalars(select(VetMessage).where(VetMessage.entry_id == entry_id)
                              .order_by(VetMessage.created_at, VetMessage.id)).all()


def entry_in(room, entry_id):
    entry = db.session.get(StageQueueEntry, entry_id)
    if entry is None or entry.room_id != room.id:
        raise NotFound("There is no such place in this room's queue.")
    return entry


def entry_readable_by(user, room, entry_id):
    """The entry, if the user may read its vet conversation: its fan or a stage manager.

    Anyone else is told it does not exist.
    """
    entry = entry_in(room, entry_id)
    if entry.user_id != user.id and not can(user, "stage.manage", room.event, room.id):
        raise NotFound("There is no such place in this room's queue.")
    return entry


def stage_context(user, room):
    """What the room page shows of the stage to this user."""
    manage = can(user, "stage.manage", room.event, room.id)
    appear = can(user, "stage.appear", room.event, room.id)
    return {"stage_room": is_stage_room(room), "can_manage_stage": manage, "can_appear": appear,
            "on_stage": on_stage(room.id), "me_on_stage": current_appearance(room.id, user.id),
            **panel_context(room, user.id, manage)}


def panel_context(room, user_id, manage):
    """The backstage panel: the queue and open vettings for a manager; one's own place for a fan."""
    if manage:
        entries = queue(room.id)
        return {"queue": entries, "vet_threads": {e.id: vet_messages(e.id) for e in entries
                                                  if e.status == S.VETTING},
                "my_entry": None, "my_position": None, "my_messages": []}
    entry = latest_entry(room.id, user_id)
    show = entry is not None and (entry.is_active or entry.status == S.REJECTED)
    return {"queue": [], "vet_threads": {}, "my_entry": entry if show else None,
            "my_position": position(entry),
            "my_messages": vet_messages(entry.id) if show and entry.status in (S.VETTING, S.APPROVED) else [],
            "camera_check": show and entry.status == S.VETTING and backstage_room(room.event) is not None}


def may_publish_via_stage(user, room):
    """The stage's part of tokens.publish_allowed: on stage in this room, or being
    vetted (camera check) when this is the event's backstage room."""
    if room.kind == RoomKind.BACKSTAGE:
        return bool(db.session.scalar(select(StageQueueEntry.id).where(
            StageQueueEntry.event_id == room.event_id, StageQueueEntry.user_id == user.id,
            StageQueueEntry.status == S.VETTING).limit(1)))
    return current_appearance(room.id, user.id) is not None


def camera_check_room(room, user):
    """The backstage room whose video the user joins for the camera check while a
    host vets them in this room's queue."""
    entry = active_entry(room.id, user.id)
    backstage = backstage_room(room.event)
    if entry is None or entry.status != S.VETTING or backstage is None:
        raise DomainError("The camera check opens while a host is checking you in.", 409)
    return backstage


def backstage_room(event):
    return next((r for r in event.rooms if r.kind == RoomKind.BACKSTAGE), None)


# --- the queue -------------------------------------------------------------------------

def join_queue(room, user):
    """Put the user in the room's queue (or return the place they already hold)."""
    require_stage_room(room)
    entry = active_entry(room.id, user.id)
    if entry is not None:
        return entry
    entry = StageQueueEntry(room_id=room.id, event_id=room.event_id, user_id=user.id,
                            user_label=user.label[:120], status=S.WAITING)
    db.session.add(entry)
    db.session.flush()  # a double click racing here meets the one-active-entry index
    return entry


def leave_queue(room, user):
    """Leave the queue, or the stage. Returns the entry (None if there was none)."""
    entry = active_entry(room.id, user.id)
    if entry is None:
        return None
    if entry.status == S.ON_STAGE:
        appearance = current_appearance(room.id, user.id)
        if appearance is not None:
            end_appearance(appearance, "left")
        return entry
    _move(entry, (S.WAITING, S.VETTING, S.APPROVED), S.LEFT)
    return entry


def _move(entry, from_statuses, to_status, **values):
    """Change an entry's status only if it is still in one of from_statuses.

    A conditional UPDATE: of two hosts acting on one entry at once, one moves it
    and the other is told it already moved.
    """
    moved = db.session.execute(
        update(StageQueueEntry)
        .where(StageQueueEntry.id == entry.id, StageQueueEntry.status.in_(from_statuses))
        .values(status=to_status, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)).rowcount
    if not moved:
        db.session.refresh(entry)
        raise DomainError(f"{entry.user_label} is no longer {_describe(from_statuses)} "
                          f"(now: {entry.status.replace('_', ' ')}).", 409)
    db.session.refresh(entry)
    return entry


def _describe(statuses):
    return " or ".join(s.replace("_", " ") for s in statuses)


# --- vetting -------------------------------------------------------------------------

def open_vetting(room, host, entry_id=None):
    """Start vetting the chosen entry, or the next person waiting."""
    require_stage_room(room)
    if entry_id:
        entry = entry_in(room, entry_id)
    else:
        entry = db.session.scalar(select(StageQueueEntry).where(
            StageQueueEntry.room_id == room.id, StageQueueEntry.status == S.WAITING)
            .order_by(StageQueueEntry.created_at, StageQueueEntry.id).limit(1))
        if entry is None:
            raise DomainError("Nobody is waiting in the queue.", 409)
    if entry.status == S.VETTING and entry.vetted_by_id == host.id:
        return entry
    return _move(entry, (S.WAITING,), S.VETTING, vetted_by_id=host.id)


def post_vet_message(room, author, entry, body):
    body = (body or "").strip()
    if not body:
        raise DomainError("Write something before sending.", 422)
    if len(body) > MAX_BODY:
        raise DomainError(f"Messages are at most {MAX_BODY} characters ({len(body)} written).", 422)
    if entry.status not in (S.VETTING, S.APPROVED, S.ON_STAGE):
        raise DomainError("This conversation is closed.", 409)
    message = VetMessage(entry_id=entry.id, author_id=author.id, author_label=author.label[:120], body=body)
    db.session.add(message)
    db.session.flush()
    return message


def clean_note(note):
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise DomainError(f"Notes are at most {MAX_NOTE} characters ({len(note)} written).", 422)
    return note or None


def parse_minutes(value):
    """The timer in whole minutes from a form field; blank means no timer."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        minutes = int(value)
    except ValueError:
        raise DomainError("The timer is a whole number of minutes.", 422) from None
    if not 1 <= minutes <= MAX_TIMER_MINUTES:
        raise DomainError(f"The timer is between 1 and {MAX_TIMER_MINUTES} minutes.", 422)
    return minutes


def reject(room, host, entry, note=None):
    return _move(entry, (S.WAITING, S.VETTING, S.APPROVED), S.REJECTED, note=clean_note(note),
                 vetted_by_id=host.id)


def approve(room, host, entry, note=None, minutes=None):
    """Approve and bring on stage if a slot is free; else the entry waits, approved.

    Returns the appearance, or None when the stage is full.
    """
    require_stage_room(room)
    note = clean_note(note)
    if entry.status == S.APPROVED:
        return bring_on_stage(room, entry, minutes)
    _move(entry, (S.WAITING, S.VETTING), S.APPROVED, note=note, vetted_by_id=host.id)
    try:
        return bring_on_stage(room, entry, minutes)
    except StageFull:
        return None


def _lock_room_stage(room_id):
    """Serialise stage takes per room on PostgreSQL (SQLite has one writer already)."""
    if db.session.get_bind(StageAppearance).dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"stage:{room_id}".encode()).digest()[:8], "big", signed=True)
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key},
                           bind_arguments={"mapper": StageAppearance})


def bring_on_stage(room, entry, minutes=None):
    """Seat an approved entry in a free slot. StageFull if none is free."""
    _move(entry, (S.APPROVED,), S.ON_STAGE)  # first write: takes SQLite's writer lock
    _lock_room_stage(room.id)
    taken = set(db.session.scalars(select(StageAppearance.slot_no).where(
        StageAppearance.room_id == room.id, StageAppearance.ended_at.is_(None))))
    free = [n for n in range(room.stage_slots) if n not in taken]
    if not free:
        _move(entry, (S.ON_STAGE,), S.APPROVED)  # stays approved, for the next free slot
        raise StageFull(f"The stage is full ({room.stage_slots} of {room.stage_slots}). "
                        "Remove someone first; the person stays approved.")
    now = utcnow()
    appearance = StageAppearance(room_id=room.id, entry_id=entry.id, user_id=entry.user_id,
                                 user_label=entry.user_label, slot_no=free[0], started_at=now,
                                 ends_at=now + timedelta(minutes=minutes) if minutes else None)
    db.session.add(appearance)
    db.session.flush()
    _record(appearance, "enter", now)
    return appearance


def appearance_in(room, appearance_id):
    appearance = db.session.get(StageAppearance, appearance_id)
    if appearance is None or appearance.room_id != room.id:
        raise NotFound("That person is not on this stage.")
    return appearance


def end_appearance(appearance, reason, now=None):
    """End an appearance once (a conditional UPDATE); returns whether this call ended it."""
    now = now or utcnow()
    ended = db.session.execute(
        update(StageAppearance)
        .where(StageAppearance.id == appearance.id, StageAppearance.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
        .execution_options(synchronize_session=False)).rowcount
    if not ended:
        return False
    db.session.execute(update(StageQueueEntry).where(StageQueueEntry.id == appearance.entry_id)
                       .values(status=S.DONE, updated_at=now).execution_options(synchronize_session=False))
    db.session.refresh(appearance)
    _record(appearance, "exit", now, reason)
    return True


def remove_from_stage(room, appearance):
    if not end_appearance(appearance, "removed"):
        raise DomainError(f"{appearance.user_label} has already left the stage.", 409)
    return appearance


def set_timer(room, appearance, minutes):
    """The appearance ends `minutes` from now (None: no timer)."""
    if appearance.ended_at is not None:
        raise DomainError(f"{appearance.user_label} has already left the stage.", 409)
    appearance.ends_at = utcnow() + timedelta(minutes=minutes) if minutes else None
    db.session.flush()
    return appearance


def end_if_due(appearance_id, now=None):
    """The timer job's rule: end the appearance if its timer has run out (idempotent:
    an ended appearance, a cleared or a moved-out timer leave it be)."""
    now = now or utcnow()
    appearance = db.session.get(StageAppearance, appearance_id)
    if appearance is None or appearance.ended_at is not None or appearance.ends_at is None:
        return None
    if appearance.ends_at > now + timedelta(seconds=1):
        return None
    return appearance if end_appearance(appearance, "timer", now) else None


def _record(appearance, kind, at, reason=None):
    started = _recording_started(appearance.room_id)
    offset = int((at - started).total_seconds() * 1000) if started and started <= at else None
    db.session.add(StageEvent(room_id=appearance.room_id, user_id=appearance.user_id,
                              entry_id=appearance.entry_id, appearance_id=appearance.id, kind=kind, at=at,
                              recording_started_at=started if offset is not None else None,
                              recording_offset_ms=offset, reason=reason))
    db.session.flush()


def _recording_started(room_id):
    try:
        raw = redis.get(recording_started_key(room_id))
        if not raw:
            return None
        started = datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)
        return started if started.tzinfo else started.replace(tzinfo=UTC)
    except Exception:  # a malformed or unreachable key costs the offset, never the stage change
        log.warning("could not read the recording start of room %s", room_id, exc_info=True)
        return None


# --- after the commit -------------------------------------------------------------------

def announce(room_id, *user_ids):
    """Tell every web process the stage or queue changed; user_ids name the people
    whose own panel changed (their sockets get it re-rendered)."""
    publish(room_id, "stage", user_ids=[u for u in user_ids if u])


def announce_vet_message(room_id, entry, message):
    """Published on the room's channel, but the hub sends it to the entry's fan and the
    stage managers only (app/rooms/stage_routes.fan_out_vet)."""
    publish(room_id, "vet", entry_id=entry.id, user_id=entry.user_id,
            message={"id": message.id, "author_id": message.author_id, "author_label": message.author_label,
                     "body": message.body, "created_at": message.created_at.isoformat()})


def set_publish(room, user_id, can_publish):
    """Grant or revoke publishing in LiveKit now; a LiveKit that is down or a person
    not (yet) connected never undoes the stage change (their next token says the same)."""
    if not livekit.is_enabled():
        return False
    try:
        livekit.update_participant_permission(room.livekit_room_name, user_id, can_publish=can_publish)
        return True
    except livekit.ParticipantNotFound:
        log.info("stage: %s is not in LiveKit room %s; the token will carry publish=%s",
                 user_id, room.livekit_room_name, can_publish)
    except livekit.LiveKitError as exc:
        log.warning("stage: LiveKit permission for %s in %s not changed (%s)", user_id,
                    room.livekit_room_name, exc.message)
    return False


def schedule_timer(appearance):
    """After the commit: a job at the appearance's end time. The job id names the
    appearance and the time, so the same timer is never scheduled twice; a job of
    a timer that was changed since finds nothing due and does nothing."""
    if appearance.ends_at is None:
        return None
    stamp = int(appearance.ends_at.timestamp())
    return redis.queue().enqueue_at(appearance.ends_at, end_appearance_job, appearance.id,
                                    job_id=f"stage-timer-{appearance.id}-{stamp}",
                                    description=f"end stage appearance {appearance.id}")


def end_appearance_job(appearance_id):
    """RQ job: end the appearance if its timer ran out. Idempotent (end_if_due)."""
    appearance = end_if_due(appearance_id)
    db.session.commit()
    if appearance is not None:
        after_exit(room_of(appearance.room_id), appearance)
    return appearance is not None


def sweep_overdue_appearances(now=None):
    """Periodic: end the appearances whose timer ran out while no job ran it (a worker
    down at the time, a lost job). Returns how many it ended."""
    now = now or utcnow()
    overdue = db.session.scalars(select(StageAppearance.id).where(
        StageAppearance.ended_at.is_(None), StageAppearance.ends_at <= now)).all()
    return sum(end_appearance_job(appearance_id) for appearance_id in overdue)


def _publishes_anyway(room, user_id):
    from app.rooms.tokens import publish_allowed  # tokens asks this module; import late

    user = user_for(user_id)
    return user is not None and publish_allowed(user, room.event, room)


def after_enter(room, appearance):
    set_publish(room, appearance.user_id, True)
    schedule_timer(appearance)
    announce(room.id, appearance.user_id)


def after_exit(room, appearance):
    if room is not None:
        if not _publishes_anyway(room, appearance.user_id):
            set_publish(room, appearance.user_id, False)
        announce(room.id, appearance.user_id)


def after_vetting_opened(room, entry):
    backstage = backstage_room(room.event)
    if backstage is not None:
        set_publish(backstage, entry.user_id, True)
    announce(room.id, entry.user_id)


def after_vetting_closed(room, entry):
    backstage = backstage_room(room.event)
    if backstage is not None and not _publishes_anyway(backstage, entry.user_id):
        set_publish(backstage, entry.user_id, False)
    announce(room.id, entry.user_id)


def user_for(user_id):
    return db.session.get(User, user_id)


def room_of(room_id):
    return db.session.get(Room, room_id)
