"""Organiser pages for orders: list, detail, mark paid, CSV."""
from app.manage import bp  # noqa: F401
