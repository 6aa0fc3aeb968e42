"""Check-in at the door: type or scan a ticket code."""
from app.manage import bp  # noqa: F401
