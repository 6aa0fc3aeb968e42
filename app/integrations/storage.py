"""File storage for uploads (avatars, cover images) on the local disk.

Keys are relative paths with a random part, so a URL cannot be guessed.
"""
import os

from flask import current_app


def _root():
    return current_app.config["UPLOAD_DIR"]


def save(key, data: bytes):
    path = os.path.join(_root(), key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)  # readers never see a half-written file


def delete(key):
    try:
        os.remove(os.path.join(_root(), key))
    except FileNotFoundError:
        pass


def root_dir():
    return _root()
