"""Refuse to run code ahead of its migrations.

The platform we learn from shipped code before its migrations more than any other
mistake; here web and worker check both databases at start and stop with a clear
message when either is not at the head revision.
"""
import logging
import os

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.extensions import db

logging.getLogger("alembic").setLevel(logging.WARNING)
MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")


class SchemaBehind(RuntimeError):
    pass


def head_revisions():
    config = Config(os.path.join(MIGRATIONS_DIR, "alembic.ini"))
    config.set_main_option("script_location", MIGRATIONS_DIR)
    return set(ScriptDirectory.from_config(config).get_heads())


def database_revisions():
    """{bind name: set of revisions} for the default database and every bind."""
    revisions = {}
    for bind in [None, *db.engines.keys() - {None}]:
        version_table = f"alembic_version_{bind}" if bind else "alembic_version"  # as in env.py
        with db.engines[bind].connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": version_table})
            revisions[bind or "default"] = set(context.get_current_heads())
    return revisions


def check_schema_current(app):
    if not app.config["CHECK_MIGRATIONS"]:
        return
    with app.app_context():
        heads = head_revisions()
        behind = {name: current for name, current in database_revisions().items() if current != heads}
    if behind:
        found = ", ".join(f"{name} at {', '.join(sorted(rev)) or 'no revision'}" for name, rev in behind.items())
        raise SchemaBehind(
            f"The database schema is behind the code ({found}; head is {', '.join(sorted(heads))}). "
            "Run `flask db upgrade` (the release phase does this on deploy) and start again.")
