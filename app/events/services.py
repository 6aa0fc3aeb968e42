"""Public event listings and the public event page."""
from sqlalchemy import select

from app.access.services import can, is_on_team
from app.errors import NotFound
from app.extensions import db
from app.models import Event, EventStatus
from app.models.base import utcnow


def upcoming_events(limit=12):
    return db.session.scalars(
        select(Event).where(Event.status == EventStatus.ACTIVE, Event.ends_at > utcnow())
        .order_by(Event.starts_at).limit(limit)).all()


def events_of_account(account_id):
    return db.session.scalars(
        select(Event).where(Event.account_id == account_id).order_by(Event.starts_at)).all()


def visible_event(event_id, user):
    """Active events are public; drafts and archived ones only to the team."""
    event = db.session.get(Event, event_id)
    if event is None or (event.status != EventStatus.ACTIVE and not is_on_team(user, event)):
        raise NotFound("There is no such event.")
    return event


def ticket_types_on_sale(event, now=None):
    """Ticket types whose sales window is open now, in the organiser's order."""
    now = now or utcnow()
    if event.status != EventStatus.ACTIVE:
        return []
    return [t for t in event.ticket_types
            if (t.sales_starts_at is None or t.sales_starts_at <= now)
            and (t.sales_ends_at is None or now < t.sales_ends_at)]


def enterable_rooms(event, user):
    return [room for room in event.rooms if can(user, "room.join", event, room.id)]
