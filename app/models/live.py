"""Tables of the `live` database: bursty data kept apart from the business data.

No foreign keys reach across databases; ids are copied as plain strings.
"""
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, Text
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
