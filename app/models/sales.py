"""Seats on their way to being sold (holds) and sold (tickets)."""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, check_in, new_id, utcnow


class HoldStatus(StrEnum):
    ACTIVE = "active"          # counts in ticket_types.held
    CONFIRMED = "confirmed"    # moved into ticket_types.sold through an order
    EXPIRED = "expired"
    RELEASED = "released"      # given back by the buyer


class Hold(db.Model):
    """Seats reserved for a buyer for a few minutes, counted against capacity."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint(check_in("status", list(HoldStatus)), name="status"),
        Index("holds_status_expires_idx", "status", "expires_at"),
        Index("holds_user_created_idx", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    ticket_type_id: Mapped[str] = mapped_column(ForeignKey("ticket_types.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default=HoldStatus.ACTIVE)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    ticket_type = relationship("TicketType")
    event = relationship("Event")


class TicketStatus(StrEnum):
    VALID = "valid"
    VOID = "void"


class Ticket(db.Model):
    """One seat of an order, with the unguessable code in its QR."""

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(check_in("status", list(TicketStatus)), name="status"),
        Index("tickets_event_type_idx", "event_id", "ticket_type_id"),
        Index("tickets_holder_created_idx", "holder_user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    order_item_id: Mapped[str] = mapped_column(ForeignKey("order_items.id", ondelete="CASCADE"), index=True)
    ticket_type_id: Mapped[str] = mapped_column(ForeignKey("ticket_types.id", ondelete="RESTRICT"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    holder_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(8), default=TicketStatus.VALID)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_in_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    order = relationship("Order", back_populates="tickets")
    order_item = relationship("OrderItem")
    ticket_type = relationship("TicketType")
    event = relationship("Event")
    holder = relationship("User", foreign_keys=[holder_user_id])
    checked_in_by = relationship("User", foreign_keys=[checked_in_by_id])
