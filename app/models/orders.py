"""Orders, ours and imported: who bought what, and whether it is paid."""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, check_in, new_id, utcnow


class Retailer(StrEnum):
    DIRECT = "direct"
    SHOPIFY = "shopify"
    EVENTBRITE = "eventbrite"
    STRIPE = "stripe"
    MANUAL = "manual"


class OrderStatus(StrEnum):
    PENDING = "pending"      # seats taken, payment still due (pay later / at the door)
    PAID = "paid"
    CANCELLED = "cancelled"


class PaymentMethod(StrEnum):
    FREE = "free"
    STRIPE = "stripe"
    PAY_LATER = "pay_later"
    EXTERNAL = "external"


class Order(db.Model):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("retailer", "external_id"),
        # A double-submitted confirm carries the same key: one order.
        UniqueConstraint("user_id", "idempotency_key"),
        CheckConstraint(check_in("retailer", list(Retailer)), name="retailer"),
        CheckConstraint(check_in("status", list(OrderStatus)), name="status"),
        CheckConstraint(check_in("payment_method", list(PaymentMethod)), name="payment_method"),
        CheckConstraint("total_cents >= 0", name="total"),
        Index("orders_event_created_idx", "event_id", "created_at"),
        Index("orders_user_created_idx", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(12), unique=True)  # what people read out at the door
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    retailer: Mapped[str] = mapped_column(String(12), default=Retailer.DIRECT)
    external_id: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(10))
    payment_method: Mapped[str] = mapped_column(String(10))
    total_cents: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    buyer_email: Mapped[str | None] = mapped_column(String(254), index=True)
    buyer_name: Mapped[str | None] = mapped_column(String(120))
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    stripe_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    marked_paid_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                          index=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    event = relationship("Event")
    user = relationship("User", foreign_keys=[user_id])
    items = relationship("OrderItem", back_populates="order", cascade="all, delete-orphan",
                         passive_deletes=True)
    tickets = relationship("Ticket", back_populates="order", order_by="Ticket.created_at",
                           cascade="all, delete-orphan", passive_deletes=True)


class OrderItem(db.Model):
    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint("unit_price_cents >= 0", name="price"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    ticket_type_id: Mapped[str] = mapped_column(ForeignKey("ticket_types.id", ondelete="RESTRICT"), index=True)
    # A hold turns into at most one order item.
    hold_id: Mapped[str | None] = mapped_column(ForeignKey("holds.id", ondelete="SET NULL"), unique=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)

    order = relationship("Order", back_populates="items")
    ticket_type = relationship("TicketType")
