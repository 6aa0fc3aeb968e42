"""Organiser pages for the team, invitations and participants."""
from app.manage import bp  # noqa: F401
