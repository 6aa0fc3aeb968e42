from datetime import date, datetime
from enum import StrEnum

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, check_in, new_id, utcnow


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # Stored normalised (lower-case e-mail, E.164 phone); NULLs do not collide.
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    name: Mapped[str | None] = mapped_column(String(120))
    display_name: Mapped[str | None] = mapped_column(String(60))
    pronouns: Mapped[str | None] = mapped_column(String(40))
    location: Mapped[str | None] = mapped_column(String(120))
    birthdate: Mapped[date | None] = mapped_column(Date)
    avatar_key: Mapped[str | None] = mapped_column(String(200))
    current_account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    current_account = relationship("Account", foreign_keys=[current_account_id])
    providers = relationship("UserProvider", back_populates="user", cascade="all, delete-orphan",
                             passive_deletes=True)

    @property
    def label(self):
        """What other people see: display name, else name, else the address."""
        return self.display_name or self.name or self.email or self.phone or "Someone"

    def __repr__(self):
        return f"<User {self.id} {self.email or self.phone}>"


class UserProvider(db.Model):
    """A third-party identity (Google) linked to a user."""

    __tablename__ = "user_providers"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user = relationship("User", back_populates="providers")


class CodeChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class LoginCode(db.Model):
    """A one-time sign-in code. Only an HMAC of the code is kept.

    For SMS through Twilio Verify, Twilio holds the code (code_hash is NULL); the
    row still carries our own expiry and attempt count.
    """

    __tablename__ = "login_codes"
    __table_args__ = (
        CheckConstraint(check_in("channel", list(CodeChannel)), name="channel"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("login_codes_destination_idx", "channel", "destination", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(10))
    destination: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
