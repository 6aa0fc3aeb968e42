"""Tables of the `live` database: bursty data kept apart from the business data.

No foreign keys reach across databases; ids are copied as plain strings.
"""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, check_in, new_id, utcnow

SIGN_IN_METHODS = ("email", "sms", "google")


class SignInEvent(db.Model):
    """Each successful sign-in: the user's "recent sign-ins" security log.

    Written after the sign-in commits (no transaction spans both databases);
    losing one row loses a log line, never a sign-in.
    """

    __bind_key__ = "live"
    __tablename__ = "sign_in_events"
    __table_args__ = (
        CheckConstraint(check_in("method", SIGN_IN_METHODS), name="method"),
        Index("sign_in_events_user_created_idx", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(10))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatMessage(db.Model):
    """A message in a room's built-in chat. Deleting hides it (deleted_at, by whom),
    so a moderator's action stays on record."""

    __bind_key__ = "live"
    __tablename__ = "chat_messages"
    __table_args__ = (
        CheckConstraint("length(body) BETWEEN 1 AND 500", name="body_length"),
        Index("chat_messages_room_created_idx", "room_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    room_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    # The author's name when they wrote: the live database cannot join users.
    author_label: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_by_id: Mapped[str | None] = mapped_column(String(32))


# --- the stage: backstage queue, vetting, appearances --------------------------------
#
# All four tables live in the live database so that a queue entry, the stage slot it
# takes and the stage event it writes change in one transaction.

class StageEntryStatus(StrEnum):
    WAITING = "waiting"      # in the backstage queue
    VETTING = "vetting"      # a host is talking to them (private chat, camera check)
    APPROVED = "approved"    # cleared, waiting for a free stage slot
    ON_STAGE = "on_stage"
    DONE = "done"            # was on stage, the appearance ended
    REJECTED = "rejected"
    LEFT = "left"            # left the queue themselves


ACTIVE_ENTRY_STATUSES = (StageEntryStatus.WAITING, StageEntryStatus.VETTING, StageEntryStatus.APPROVED,
                         StageEntryStatus.ON_STAGE)
_ACTIVE_ENTRY_SQL = check_in("status", [s.value for s in ACTIVE_ENTRY_STATUSES])


class StageQueueEntry(db.Model):
    """One person's turn in a room's backstage queue, from joining to leaving the stage.

    A person has at most one active entry per room (partial unique index); their
    place in the queue is their created_at among those waiting.
    """

    __bind_key__ = "live"
    __tablename__ = "stage_queue_entries"
    __table_args__ = (
        CheckConstraint(check_in("status", list(StageEntryStatus)), name="status"),
        Index("stage_queue_entries_one_active_idx", "room_id", "user_id", unique=True,
              sqlite_where=text(_ACTIVE_ENTRY_SQL), postgresql_where=text(_ACTIVE_ENTRY_SQL)),
        Index("stage_queue_entries_room_status_idx", "room_id", "status", "created_at"),
        Index("stage_queue_entries_user_idx", "user_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    room_id: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    # The person's name when they joined: the live database cannot join users.
    user_label: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(10), default=StageEntryStatus.WAITING)
    vetted_by_id: Mapped[str | None] = mapped_column(String(32))
    # The host's note on approval or rejection, shown to the fan.
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def is_active(self):
        return self.status in ACTIVE_ENTRY_STATUSES


class VetMessage(db.Model):
    """The private conversation of a vetting: the fan and the stage managers only."""

    __bind_key__ = "live"
    __tablename__ = "vet_messages"
    __table_args__ = (
        CheckConstraint("length(body) BETWEEN 1 AND 500", name="body_length"),
        Index("vet_messages_entry_created_idx", "entry_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    entry_id: Mapped[str] = mapped_column(ForeignKey("stage_queue_entries.id", ondelete="CASCADE"))
    author_id: Mapped[str] = mapped_column(String(32))
    author_label: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


APPEARANCE_END_REASONS = ("removed", "timer", "left")


class StageAppearance(db.Model):
    """One person on stage in one slot, from entering to leaving.

    Slots are race-proof in the database: a current appearance (ended_at NULL)
    holds slot_no, and the partial unique index allows one current appearance per
    (room, slot). The service picks slot_no below the room's stage_slots, so two
    hosts approving at once can never seat more people than there are slots.
    """

    __bind_key__ = "live"
    __tablename__ = "stage_appearances"
    __table_args__ = (
        CheckConstraint("slot_no >= 0", name="slot_no"),
        CheckConstraint("ended_at IS NULL OR " + check_in("end_reason", APPEARANCE_END_REASONS), name="end_reason"),
        Index("stage_appearances_one_per_slot_idx", "room_id", "slot_no", unique=True,
              sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL")),
        Index("stage_appearances_one_per_user_idx", "room_id", "user_id", unique=True,
              sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL")),
        Index("stage_appearances_user_idx", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    room_id: Mapped[str] = mapped_column(String(32))
    entry_id: Mapped[str] = mapped_column(ForeignKey("stage_queue_entries.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[str] = mapped_column(String(32))
    user_label: Mapped[str] = mapped_column(String(120))
    slot_no: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the host's timer, if set
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(10))


class StageEvent(db.Model):
    """Every enter and exit of the stage: what the clip pipeline will cut by.

    recording_offset_ms is the time since the recording started, when one was
    running (its start read from Redis, see app/rooms/stage.py); else NULL.
    """

    __bind_key__ = "live"
    __tablename__ = "stage_events"
    __table_args__ = (
        CheckConstraint(check_in("kind", ("enter", "exit")), name="kind"),
        Index("stage_events_room_at_idx", "room_id", "at"),
        Index("stage_events_appearance_idx", "appearance_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    room_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    entry_id: Mapped[str] = mapped_column(String(32))
    appearance_id: Mapped[str] = mapped_column(ForeignKey("stage_appearances.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(5))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recording_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recording_offset_ms: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(10))
