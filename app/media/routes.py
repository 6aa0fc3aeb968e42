"""Uploaded files (avatars, covers). Keys carry a random part; files never change
under a key, so browsers may cache them for long."""
from flask import Blueprint, send_from_directory

from app.integrations import storage

bp = Blueprint("media", __name__)


@bp.get("/<path:key>")
def file(key):
    return send_from_directory(storage.root_dir(), key, max_age=30 * 24 * 3600)
