"""Column types and helpers shared by every model."""
import uuid
from datetime import UTC, datetime

from sqlalchemy import DateTime, TypeDecorator


def new_id():
    """Unguessable string ids: rows appear in URLs, so never a sequence."""
    return uuid.uuid4().hex


def utcnow():
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on both databases (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store UTC-aware values only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_in(column, values):
    """CHECK constraint text for a short string enum."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"
