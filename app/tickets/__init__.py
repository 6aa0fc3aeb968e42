"""A ticket holder's side: my tickets, each with its QR code, PDF and calendar file."""
from flask import Blueprint

bp = Blueprint("tickets", __name__)

from app.tickets import routes  # noqa: E402,F401  (routes register on bp)
