"""The live room: page, socket, presence, chat, LiveKit."""
from flask import Blueprint

bp = Blueprint("rooms", __name__)

from app.rooms import livekit_routes, routes, stage_routes, twilio_routes  # noqa: E402,F401  (routes register on bp)
