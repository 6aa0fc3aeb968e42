"""Public event listings."""
from sqlalchemy import select

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
