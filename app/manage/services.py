"""Organiser rules for events, rooms and ticket types."""
from sqlalchemy import func, select

from app.extensions import db
from app.models import AccessGrant, Event, Room, TicketType

PAGE_SIZE = 20


def dashboard_events(account_id, status=None, query=None, page=1):
    """One page of the account's events with their counts, and the total."""
    rooms = (select(func.count()).select_from(Room).where(Room.event_id == Event.id)
             .correlate(Event).scalar_subquery())
    ticket_types = (select(func.count()).select_from(TicketType).where(TicketType.event_id == Event.id)
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
        select(Event, rooms.label("rooms"), ticket_types.label("ticket_types"), people.label("participants"))
        .where(*conditions).order_by(Event.starts_at.desc(), Event.id)
        .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return rows, total


def status_counts(account_id):
    return dict(db.session.execute(
        select(Event.status, func.count()).where(Event.account_id == account_id).group_by(Event.status)).all())
