"""Organiser rules for events, rooms and ticket types.

Every function flushes and never commits; a rule that says no raises a
DomainError (FieldError when the message belongs next to one form field).
"""
import re
import secrets
import unicodedata
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.access.services import owns_account
from app.errors import DomainError, Forbidden, NotFound
from app.extensions import db
from app.images import resize_image
from app.integrations import storage
from app.models import AccessGrant, Event, EventStatus, Room, RoomKind, TicketType
from app.models.base import utcnow
from app.models.events import DEFAULT_STAGE_SLOTS

PAGE_SIZE = 20
COVER_SIZE = (1600, 900)
COVER_MAX_BYTES = 5 * 1024 * 1024
SLUG_MAX = 80
SALES_OPEN_AT_MOST_AHEAD = timedelta(days=730)

SLUG_TAKEN = "That address is taken. Choose another one."
SKU_TAKEN = "Another ticket type of this event already uses that SKU."


class FieldError(DomainError):
    """A rule about one form field: the route shows the message next to it."""

    def __init__(self, field, message, status=422):
        super().__init__(message, status)
        self.field = field


@contextmanager
def _unique(field, message):
    """Two saves racing past the check before them meet the unique constraint:
    give the loser the same message as the check."""
    try:
        yield
    except IntegrityError:
        raise FieldError(field, message) from None


# --- the dashboard ---------------------------------------------------------------

def dashboard_events(account_id, status=None, query=None, page=1):
    """One page of the account's events with their counts, and the total."""
    rooms = (select(func.count()).select_from(Room).where(Room.event_id == Event.id)
             .correlate(Event).scalar_subquery())
    ticket_types = (select(func.count()).select_from(TicketType).where(TicketType.event_id == Event.id)
                    .correlate(Event).scalar_subquery())
    sold = (select(func.coalesce(func.sum(TicketType.sold), 0)).where(TicketType.event_id == Event.id)
            .correlate(Event).scalar_subquery())
    capacity = (select(func.coalesce(func.sum(TicketType.capacity), 0)).where(TicketType.event_id == Event.id)
                .correlate(Event).scalar_subquery())
    people = (select(func.count(func.distinct(func.coalesce(AccessGrant.user_id, AccessGrant.pending_profile_id))))
              .where(AccessGrant.event_id == Event.id).correlate(Event).scalar_subquery())
    conditions = [Event.account_id == account_id]
    if status:
        conditions.append(Event.status == status)
    if query:
        conditions.append(func.lower(Event.name).contains(query.lower(), autoescape=True))
    total = db.session.scalar(select(func.count()).select_from(Event).where(*conditions))
    rows = db.session.execute(
        select(Event, rooms.label("rooms"), ticket_types.label("ticket_types"), people.label("participants"),
               sold.label("sold"), capacity.label("capacity"))
        .where(*conditions).order_by(Event.starts_at.desc(), Event.id)
        .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return rows, total


def status_counts(account_id):
    return dict(db.session.execute(
        select(Event.status, func.count()).where(Event.account_id == account_id).group_by(Event.status)).all())


# --- events --------------------------------------------------------------------------

def account_for_new_event(user):
    """New events go into the user's current account, which they must own."""
    account = user.current_account
    if account is None or not owns_account(user, account.id):
        raise Forbidden("Only owners of an account can create events in it. Switch to an account you own.")
    return account


def slugify(text):
    """'Summer Fest 2025!' -> 'summer-fest-2025'; accents folded to ASCII."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:SLUG_MAX].rstrip("-")


def _slug_taken(account_id, slug, event_id=None):
    query = select(Event.id).where(Event.account_id == account_id, Event.slug == slug)
    if event_id:
        query = query.where(Event.id != event_id)
    return db.session.scalar(query.limit(1)) is not None


def _free_slug(account_id, name):
    """A slug derived from the name, numbered when the account already uses it."""
    base = slugify(name) or "event"
    slug, number = base, 1
    while _slug_taken(account_id, slug):
        number += 1
        suffix = f"-{number}"
        slug = base[:SLUG_MAX - len(suffix)].rstrip("-") + suffix
    return slug


def _check_dates(starts_at, ends_at):
    if ends_at <= starts_at:
        raise FieldError("ends_at", "The event must end after it starts.")


def create_event(account, *, name, slug, description, starts_at, ends_at, timezone):
    """A draft event with its main stage and backstage. A blank slug is derived from the name."""
    _check_dates(starts_at, ends_at)
    if slug and _slug_taken(account.id, slug):
        raise FieldError("slug", SLUG_TAKEN)
    event = Event(account_id=account.id, name=name, slug=slug or _free_slug(account.id, name),
                  description=description, starts_at=starts_at, ends_at=ends_at, timezone=timezone,
                  status=EventStatus.DRAFT)
    db.session.add(event)
    with _unique("slug", SLUG_TAKEN):
        db.session.flush()
    db.session.add_all([
        Room(event=event, name="Main stage", kind=RoomKind.MAIN, is_main_room=True, position=0),
        Room(event=event, name="Backstage", kind=RoomKind.BACKSTAGE, position=1),
    ])
    db.session.flush()
    return event


def update_event(event, *, name, slug, description, starts_at, ends_at, timezone):
    """Save the event's details. A blank slug keeps the current address."""
    _check_dates(starts_at, ends_at)
    if slug and slug != event.slug and _slug_taken(event.account_id, slug, event.id):
        raise FieldError("slug", SLUG_TAKEN)
    late_sales = db.session.scalar(select(TicketType.name).where(
        TicketType.event_id == event.id, TicketType.sales_ends_at > ends_at).limit(1))
    if late_sales:
        raise FieldError("ends_at", f"Sales of “{late_sales}” end after that; move their end first.")
    event.name, event.description, event.timezone = name, description, timezone
    event.starts_at, event.ends_at = starts_at, ends_at
    event.slug = slug or event.slug
    with _unique("slug", SLUG_TAKEN):
        db.session.flush()
    return event


def publish_event(event):
    """Draft -> active, once people have somewhere to go and the dates make sense."""
    if event.status != EventStatus.DRAFT:
        raise DomainError("Only a draft can be published.", 409)
    if event.main_room is None:
        raise DomainError("Add a main room before publishing: it is where attendees arrive.", 409)
    _check_dates(event.starts_at, event.ends_at)
    if event.ends_at <= utcnow():
        raise DomainError("This event has already ended. Move its dates before publishing.", 409)
    event.status = EventStatus.ACTIVE
    db.session.flush()
    return event


def archive_event(event):
    if event.status == EventStatus.ARCHIVED:
        raise DomainError("This event is already archived.", 409)
    event.status = EventStatus.ARCHIVED
    db.session.flush()
    return event


def delete_event(event):
    """Only drafts: once published, people may hold tickets and grants. Returns
    the cover's storage key, to delete after the commit."""
    if event.status != EventStatus.DRAFT:
        raise DomainError("Only a draft can be deleted. Archive this event instead.", 409)
    cover_key = event.cover_image_key
    db.session.delete(event)
    db.session.flush()
    return cover_key


def set_cover(event, data: bytes):
    """Store the new cover; returns the old one's key, to delete after the commit."""
    image = resize_image(data, max_bytes=COVER_MAX_BYTES, size=COVER_SIZE)
    key = f"covers/{event.id}-{secrets.token_hex(8)}.webp"
    storage.save(key, image)
    old_key, event.cover_image_key = event.cover_image_key, key
    db.session.flush()
    return old_key


# --- rooms -------------------------------------------------------------------------------

def rooms_of(event):
    return db.session.scalars(select(Room).where(Room.event_id == event.id)
                              .order_by(Room.position, Room.created_at, Room.id)).all()


def room_of(event, room_id):
    room = db.session.get(Room, room_id)
    if room is None or room.event_id != event.id:
        raise NotFound("There is no such room in this event.")
    return room


def add_room(event, *, name, kind, capacity, stage_slots=None):
    if kind == RoomKind.MAIN and event.main_room is not None:
        raise FieldError("kind", "This event already has a main room.")
    last = db.session.scalar(select(func.max(Room.position)).where(Room.event_id == event.id))
    room = Room(event_id=event.id, name=name, kind=kind, is_main_room=kind == RoomKind.MAIN,
                capacity=capacity, stage_slots=stage_slots or DEFAULT_STAGE_SLOTS,
                position=(last + 1) if last is not None else 0)
    db.session.add(room)
    db.session.flush()
    return room


def update_room(room, *, name, capacity, stage_slots=None):
    """Fewer stage places take effect as people leave the stage: nobody is pushed off."""
    room.name, room.capacity = name, capacity
    if stage_slots:
        room.stage_slots = stage_slots
    db.session.flush()
    return room


def move_room(room, direction):
    """Swap the room with its neighbour above or below; positions end up 0..n-1."""
    if direction not in ("up", "down"):
        raise DomainError("Move a room up or down.", 422)
    rooms = list(rooms_of(room.event))
    index = rooms.index(room)
    other = index - 1 if direction == "up" else index + 1
    if 0 <= other < len(rooms):
        rooms[index], rooms[other] = rooms[other], rooms[index]
    for position, each in enumerate(rooms):
        each.position = position
    db.session.flush()
    return rooms


def delete_room(room):
    if room.is_main_room and room.event.status == EventStatus.ACTIVE:
        raise DomainError("The main room cannot be deleted while the event is published: "
                          "attendees arrive there. Archive the event first.", 409)
    db.session.delete(room)
    db.session.flush()


# --- ticket types --------------------------------------------------------------------------

def ticket_type_of(event, ticket_type_id):
    ticket_type = db.session.get(TicketType, ticket_type_id)
    if ticket_type is None or ticket_type.event_id != event.id:
        raise NotFound("There is no such ticket type in this event.")
    return ticket_type


def _check_ticket_type(event, fields, ticket_type_id=None):
    starts, ends = fields["sales_starts_at"], fields["sales_ends_at"]
    if starts and ends and ends <= starts:
        raise FieldError("sales_ends_at", "Sales must end after they start.")
    if ends and ends > event.ends_at:
        raise FieldError("sales_ends_at", "Sales cannot end after the event ends.")
    if starts and starts > utcnow() + SALES_OPEN_AT_MOST_AHEAD:
        raise FieldError("sales_starts_at", "Sales cannot open more than two years from now.")
    if fields["sku"]:
        query = select(TicketType.id).where(TicketType.event_id == event.id, TicketType.sku == fields["sku"])
        if ticket_type_id:
            query = query.where(TicketType.id != ticket_type_id)
        if db.session.scalar(query.limit(1)):
            raise FieldError("sku", SKU_TAKEN)


def _granted_rooms(event, room_ids):
    rooms = [room for room in rooms_of(event) if room.id in set(room_ids)]
    if len(rooms) != len(set(room_ids)):
        raise FieldError("rooms", "That room is not part of this event.")
    return rooms


def create_ticket_type(event, *, room_ids, **fields):
    _check_ticket_type(event, fields)
    rooms = _granted_rooms(event, room_ids)
    last = db.session.scalar(select(func.max(TicketType.position)).where(TicketType.event_id == event.id))
    ticket_type = TicketType(event_id=event.id, position=(last + 1) if last is not None else 0, **fields)
    ticket_type.rooms = rooms
    db.session.add(ticket_type)
    with _unique("sku", SKU_TAKEN):
        db.session.flush()
    return ticket_type


def update_ticket_type(ticket_type, *, room_ids, **fields):
    event = ticket_type.event
    _check_ticket_type(event, fields, ticket_type.id)
    rooms = _granted_rooms(event, room_ids)
    capacity = fields.pop("capacity")
    # Checked and written in one statement: a sale landing between a check and
    # the write would otherwise push sold + held over the new capacity.
    resized = db.session.execute(
        update(TicketType)
        .where(TicketType.id == ticket_type.id, TicketType.sold + TicketType.held <= capacity)
        .values(capacity=capacity)
        .execution_options(synchronize_session=False)).rowcount
    db.session.refresh(ticket_type)
    if not resized:
        taken = ticket_type.sold + ticket_type.held
        raise FieldError("capacity", f"Capacity cannot go below the {taken} tickets already sold or held.")
    for key, value in fields.items():
        setattr(ticket_type, key, value)
    ticket_type.rooms = rooms
    with _unique("sku", SKU_TAKEN):
        db.session.flush()
    return ticket_type
