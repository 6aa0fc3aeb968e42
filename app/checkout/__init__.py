"""Buying tickets: holds, checkout, payment."""
from flask import Blueprint

bp = Blueprint("checkout", __name__)

from app.checkout import payments, routes  # noqa: E402,F401  (routes register on bp)
