from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, check_in, new_id, utcnow


class AccountKind(StrEnum):
    PERSONAL = "personal"
    ORGANIZATION = "organization"


class Account(db.Model):
    """Who events belong to: a person's own account or an organisation."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint(check_in("kind", list(AccountKind)), name="kind"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20), default=AccountKind.ORGANIZATION)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    owners = relationship("AccountOwner", back_populates="account", cascade="all, delete-orphan",
                          passive_deletes=True)

    @property
    def is_personal(self):
        return self.kind == AccountKind.PERSONAL


class AccountOwner(db.Model):
    __tablename__ = "account_owners"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account = relationship("Account", back_populates="owners")
    user = relationship("User")
