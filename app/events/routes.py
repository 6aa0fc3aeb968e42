"""The public side: home page and event pages."""
from zoneinfo import ZoneInfo

from flask import Blueprint, render_template
from flask_login import current_user

from app.events import services

bp = Blueprint("events", __name__)


@bp.get("/")
def home():
    return render_template("events/home.html", events=services.upcoming_events())


@bp.get("/events/<event_id>")
def detail(event_id):
    event = services.visible_event(event_id, current_user)
    zone = ZoneInfo(event.timezone)
    return render_template("events/detail.html", event=event,
                           starts_local=event.starts_at.astimezone(zone),
                           ends_local=event.ends_at.astimezone(zone),
                           rooms=services.enterable_rooms(event, current_user),
                           ticket_types=services.ticket_types_on_sale(event))


@bp.get("/events/<event_id>/availability")
def availability(event_id):
    """Out-of-band swaps for the ticket panel's live availability."""
    event = services.visible_event(event_id, current_user)
    return render_template("events/_availabilities.html", ticket_types=services.ticket_types_on_sale(event))
