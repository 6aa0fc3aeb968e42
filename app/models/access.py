"""Who may do what on an event: roles, grants, pending profiles, invitations."""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (Column, CheckConstraint, DateTime, ForeignKey, Index, Integer, MetaData, String,
                        Table, Text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, check_in, new_id, utcnow


class Permission(db.Model):
    __tablename__ = "permissions"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    description: Mapped[str] = mapped_column(String(200))


class Role(db.Model):
    __tablename__ = "roles"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(String(200), default="")
    rank: Mapped[int] = mapped_column(Integer, default=0)  # display order, highest first

    permissions = relationship("Permission", secondary="role_permissions", order_by="Permission.key")


class RolePermission(db.Model):
    __tablename__ = "role_permissions"

    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    permission_key: Mapped[str] = mapped_column(
        ForeignKey("permissions.key", ondelete="CASCADE"), primary_key=True, index=True)


class RoleInheritance(db.Model):
    """role_id has every permission of inherits_id (and of what that inherits)."""

    __tablename__ = "role_inheritances"
    __table_args__ = (CheckConstraint("role_id <> inherits_id", name="not_self"),)

    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    inherits_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True,
                                             index=True)


class GrantSource(StrEnum):
    TICKET = "ticket"
    ORDER = "order"
    INVITATION = "invitation"
    MANUAL = "manual"


class PendingProfile(db.Model):
    """Someone invited or sold to before they have an account. Their first sign-in
    with this e-mail or phone merges the profile into their user."""

    __tablename__ = "pending_profiles"
    __table_args__ = (CheckConstraint("email IS NOT NULL OR phone IS NOT NULL", name="contact"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    name: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def label(self):
        return self.name or self.email or self.phone


class AccessGrant(db.Model):
    """A role on an event (or one room of it) for a user or a pending profile."""

    __tablename__ = "access_grants"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (pending_profile_id IS NULL)", name="one_holder"),
        CheckConstraint(check_in("source", list(GrantSource)), name="source"),
        Index("access_grants_event_user_idx", "event_id", "user_id"),
        Index("access_grants_event_created_idx", "event_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    room_id: Mapped[str | None] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    pending_profile_id: Mapped[str | None] = mapped_column(
        ForeignKey("pending_profiles.id", ondelete="CASCADE"), index=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="RESTRICT"), index=True)
    source: Mapped[str] = mapped_column(String(12))
    # What the grant came from (an invitation, order or ticket id), for audits and revocation.
    source_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    granted_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event = relationship("Event")
    room = relationship("Room")
    role = relationship("Role")
    user = relationship("User", foreign_keys=[user_id])
    pending_profile = relationship("PendingProfile")


class Invitation(db.Model):
    """A single-use link that brings someone into an event with a role."""

    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint("email IS NOT NULL OR phone IS NOT NULL", name="contact"),
        Index("invitations_event_created_idx", "event_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    room_id: Mapped[str | None] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="RESTRICT"), index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(20))
    # Only a hash of the token is kept: the link in the message is the credential.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("access_grants.id", ondelete="SET NULL"), index=True)
    invited_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event = relationship("Event")
    room = relationship("Room")
    role = relationship("Role")
    invited_by = relationship("User", foreign_keys=[invited_by_id])

    def status(self, now):
        if self.revoked_at:
            return "revoked"
        if self.accepted_at:
            return "accepted"
        if self.expires_at <= now:
            return "expired"
        return "pending"


# The participants view (created by a migration): one row per grant with the
# person (user or pending profile), role and room. Kept out of db.metadata so
# autogenerate never tries to create it as a table.
participants_view = Table(
    "event_participants", MetaData(),
    Column("grant_id", String(32), primary_key=True),
    Column("event_id", String(32)),
    Column("room_id", String(32)),
    Column("room_name", String(80)),
    Column("role_id", String(32)),
    Column("role_name", String(60)),
    Column("role_rank", Integer),
    Column("source", String(12)),
    Column("granted_at", DateTime),
    Column("user_id", String(32)),
    Column("pending_profile_id", String(32)),
    Column("name", String(120)),
    Column("email", String(254)),
    Column("phone", String(20)),
    Column("search_text", Text),
)
