from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, check_in, new_id, utcnow


class EventStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


# "Lasts more than a day", per dialect: the predicate of a partial index over the rare
# multi-day events, so the catalog finds those still running without walking every
# event that has ended (app/events/services.py explains the split). The index has the
# listing index's columns: without planner statistics SQLite then still prefers it.
RUNS_OVER_A_DAY = {
    "sqlite": "julianday(ends_at) - julianday(starts_at) > 1",
    "postgresql": "ends_at - starts_at > interval '1 day'",
}


class Event(db.Model):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("account_id", "slug"),
        CheckConstraint(check_in("status", list(EventStatus)), name="status"),
        CheckConstraint("ends_at > starts_at", name="dates"),
        # The catalog's orderings: keyset pages on (starts_at, id); ends_at rides along so
        # "not ended" is checked in the index.
        Index("events_listing_idx", "status", "starts_at", "id", "ends_at"),
        Index("events_account_listing_idx", "account_id", "status", "starts_at", "id", "ends_at"),
        Index("events_featured_idx", "is_featured", "status", "starts_at", "id"),
        Index("events_multiday_idx", "status", "starts_at", "id", "ends_at",
              sqlite_where=text(RUNS_OVER_A_DAY["sqlite"]), postgresql_where=text(RUNS_OVER_A_DAY["postgresql"])),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default=EventStatus.DRAFT)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    cover_image_key: Mapped[str | None] = mapped_column(String(200))
    # Buyers may take paid tickets now and pay later or at the door.
    allow_pay_later: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Shown on the home page; set by the platform team, not by organisers.
    is_featured: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    account = relationship("Account")
    rooms = relationship("Room", back_populates="event", order_by="Room.position",
                         cascade="all, delete-orphan", passive_deletes=True)
    ticket_types = relationship("TicketType", back_populates="event", order_by="TicketType.position",
                                cascade="all, delete-orphan", passive_deletes=True)

    @property
    def main_room(self):
        return next((room for room in self.rooms if room.is_main_room), None)


DEFAULT_STAGE_SLOTS = 4  # people on a room's stage at once, unless the organiser says otherwise


class RoomKind(StrEnum):
    MAIN = "main"
    BACKSTAGE = "backstage"
    BREAKOUT = "breakout"


class Room(db.Model):
    __tablename__ = "rooms"
    __table_args__ = (
        CheckConstraint(check_in("kind", list(RoomKind)), name="kind"),
        CheckConstraint("capacity IS NULL OR capacity > 0", name="capacity"),
        # At most one main room per event, enforced by the database.
        Index("rooms_one_main_per_event_idx", "event_id", unique=True,
              sqlite_where=text("is_main_room"), postgresql_where=text("is_main_room")),
        Index("rooms_event_position_idx", "event_id", "position"),
        CheckConstraint("stage_slots BETWEEN 1 AND 50", name="stage_slots"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(10), default=RoomKind.BREAKOUT)
    livekit_room_name: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: f"room-{new_id()}")
    is_main_room: Mapped[bool] = mapped_column(Boolean, default=False)
    capacity: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # How many people may be on this room's stage at once (app/rooms/stage.py).
    stage_slots: Mapped[int] = mapped_column(Integer, default=DEFAULT_STAGE_SLOTS,
                                             server_default=text(str(DEFAULT_STAGE_SLOTS)))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event = relationship("Event", back_populates="rooms")


class TicketType(db.Model):
    """A kind of ticket with its own capacity. `sold` and `held` are counters kept
    by the sales services; the CHECK makes overselling impossible in the database."""

    __tablename__ = "ticket_types"
    __table_args__ = (
        UniqueConstraint("event_id", "sku"),
        CheckConstraint("price_cents >= 0", name="price"),
        CheckConstraint("capacity >= 0 AND sold >= 0 AND held >= 0", name="counts"),
        CheckConstraint("sold + held <= capacity", name="not_oversold"),
        CheckConstraint("max_per_order >= 1", name="max_per_order"),
        CheckConstraint("sales_starts_at IS NULL OR sales_ends_at IS NULL OR sales_ends_at > sales_starts_at",
                        name="sales_window"),
        Index("ticket_types_event_position_idx", "event_id", "position"),
        # The catalog's free/paid filter probes an event's ticket types by price.
        Index("ticket_types_event_price_idx", "event_id", "price_cents"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    price_cents: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    capacity: Mapped[int] = mapped_column(Integer)
    sold: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0)
    sales_starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sales_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_per_order: Mapped[int] = mapped_column(Integer, default=10)
    is_upgrade: Mapped[bool] = mapped_column(Boolean, default=False)
    sku: Mapped[str | None] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event = relationship("Event", back_populates="ticket_types")
    rooms = relationship("Room", secondary="ticket_type_rooms", order_by="Room.position")

    @property
    def is_free(self):
        return self.price_cents == 0

    @property
    def available(self):
        return max(self.capacity - self.sold - self.held, 0)


class TicketTypeRoom(db.Model):
    """The rooms a ticket type lets its holder into."""

    __tablename__ = "ticket_type_rooms"

    ticket_type_id: Mapped[str] = mapped_column(
        ForeignKey("ticket_types.id", ondelete="CASCADE"), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True, index=True)
