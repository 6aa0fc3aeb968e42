"""The public side: home page with upcoming events."""
from flask import Blueprint, render_template

from app.events.services import upcoming_events

bp = Blueprint("events", __name__)


@bp.get("/")
def home():
    return render_template("events/home.html", events=upcoming_events())
