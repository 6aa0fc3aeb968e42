"""Seats on their way to being sold (holds) and sold (tickets)."""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, text
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
        # A buyer's own active holds of a type (replaced by a new hold, counted by the
        # waitlist): without it SQLite walks every active hold of a drop.
        Index("holds_user_type_idx", "user_id", "ticket_type_id", "status"),
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


class WaitlistStatus(StrEnum):
    WAITING = "waiting"        # in the queue for a sold-out ticket type
    OFFERED = "offered"        # freed seats were reserved for them as a hold (hold_id); the hold says the rest
    LEFT = "left"              # they left the queue


class WaitlistEntry(db.Model):
    """A person waiting for a sold-out ticket type. Freed seats become a hold for
    the first in line (an offer that expires like any hold); see checkout/waitlist.py."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint(check_in("status", list(WaitlistStatus)), name="status"),
        # One place in the queue per person and ticket type; a new one after an offer or leaving.
        Index("waitlist_entries_one_waiting_idx", "ticket_type_id", "user_id", unique=True,
              sqlite_where=text("status = 'waiting'"), postgresql_where=text("status = 'waiting'")),
        # The queue, first come first served: promotion and positions walk it.
        Index("waitlist_entries_queue_idx", "ticket_type_id", "status", "created_at"),
        Index("waitlist_entries_user_idx", "user_id", "ticket_type_id"),
        # Offers whose e-mail is still to be sent (the notifier's outbox).
        Index("waitlist_entries_unnotified_idx", "offered_at",
              sqlite_where=text("status = 'offered' AND notified_at IS NULL"),
              postgresql_where=text("status = 'offered' AND notified_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    ticket_type_id: Mapped[str] = mapped_column(ForeignKey("ticket_types.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default=WaitlistStatus.WAITING)
    hold_id: Mapped[str | None] = mapped_column(ForeignKey("holds.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    ticket_type = relationship("TicketType")
    event = relationship("Event")
    user = relationship("User")
    hold = relationship("Hold")
