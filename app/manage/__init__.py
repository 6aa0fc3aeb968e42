"""Organiser pages: events, rooms, ticket types, team, participants."""
from flask import Blueprint

bp = Blueprint("manage", __name__)

from app.manage import checkin, orders, routes, team  # noqa: E402,F401  (routes register on bp)
