"""An event's people, from the event_participants view: one page at a time through a
short Redis cache, or all of them as CSV.

The cache key carries the event's participants-version counter, which
access.services bumps after every commit that changes a grant, so a change is
visible on the next request; the TTL only bounds what other edits (a renamed
user or room) may leave stale.
"""
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import func, select, type_coerce

from app.csv_export import stream_csv
from app.errors import DomainError
from app.extensions import db, redis
from app.models import Role, participants_view
from app.models.base import UTCDateTime

PAGE_SIZE = 50
CACHE_SECONDS = 30
MAX_QUERY_LENGTH = 100

view = participants_view.c


@dataclass(frozen=True)
class ParticipantFilters:
    query: str = ""
    role_id: str = ""
    room_id: str = ""


@dataclass
class Participant:
    grant_id: str
    user_id: str | None
    name: str | None
    email: str | None
    phone: str | None
    role_id: str
    role_name: str
    room_id: str | None
    room_name: str | None
    source: str
    granted_at: datetime

    @property
    def label(self):
        return self.name or self.email or self.phone

    @property
    def is_pending(self):
        """No account yet: the grant waits on a pending profile."""
        return self.user_id is None


@dataclass
class ParticipantsPage:
    rows: list
    total: int
    page: int
    pages: int


def search_query(raw):
    """A search box's text, or a DomainError saying what to fix."""
    query = (raw or "").strip()
    if len(query) > MAX_QUERY_LENGTH:
        raise DomainError(f"Search for at most {MAX_QUERY_LENGTH} characters.", 422)
    return query


def participant_filters(event, query="", role_id="", room_id=""):
    """Check what the filter form sent; the message says what to fix. Ids are matched
    against known ones in Python, so no raw input reaches a query but the search text."""
    query = search_query(query)
    if role_id and role_id not in set(db.session.scalars(select(Role.id))):
        raise DomainError("There is no such role.", 422)
    if room_id and room_id not in {room.id for room in event.rooms}:
        raise DomainError("That room is not part of this event.", 422)
    return ParticipantFilters(query, role_id or "", room_id or "")


_COLUMNS = (view.grant_id, view.user_id, view.name, view.email, view.phone, view.role_id, view.role_name,
            view.room_id, view.room_name, view.source,
            # The view hands back SQLite's naive text; this makes it the aware UTC datetime of the models.
            type_coerce(view.granted_at, UTCDateTime).label("granted_at"))


def _conditions(event, filters):
    conditions = [view.event_id == event.id]
    if filters.query:
        conditions.append(view.search_text.contains(filters.query.lower(), autoescape=True))
    if filters.role_id:
        conditions.append(view.role_id == filters.role_id)
    if filters.room_id:
        conditions.append(view.room_id == filters.room_id)
    return conditions


def _ordered(statement):
    """Highest role first, then by name; the grant id makes pages stable."""
    person = func.lower(func.coalesce(view.name, view.email, view.phone))
    return statement.order_by(view.role_rank.desc(), person, view.grant_id)


def _query_page(event, filters, page):
    conditions = _conditions(event, filters)
    total = db.session.scalar(select(func.count()).select_from(participants_view).where(*conditions))
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    page = min(page, pages)  # past the end shows the last page, and keeps OFFSET sane
    rows = db.session.execute(_ordered(select(*_COLUMNS).where(*conditions))
                              .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE))
    return ParticipantsPage([Participant(**row._mapping) for row in rows], total, page, pages)


def cache_key(event_id, filters, page):
    version = int(redis.get(f"participants-version:{event_id}") or 0)
    digest = hashlib.sha256(json.dumps([asdict(filters), page]).encode()).hexdigest()[:32]
    return f"participants:{event_id}:v{version}:{digest}"


def _dump(result):
    rows = [{**asdict(row), "granted_at": row.granted_at.isoformat()} for row in result.rows]
    return json.dumps({"rows": rows, "total": result.total, "page": result.page, "pages": result.pages})


def _load(raw):
    data = json.loads(raw)
    rows = [Participant(**{**row, "granted_at": datetime.fromisoformat(row["granted_at"])})
            for row in data.pop("rows")]
    return ParticipantsPage(rows, **data)


def participants_page(event, filters, page=1):
    """One page of the event's participants, from Redis when the same page was asked
    for since the last grant change."""
    # Read the version before querying: a change committed meanwhile bumps it, so
    # what we store can only land under a key nobody asks for any more.
    key = cache_key(event.id, filters, page)
    cached = redis.get(key)
    if cached is not None:
        return _load(cached)
    result = _query_page(event, filters, page)
    redis.set(key, _dump(result), ex=CACHE_SECONDS)
    return result


def participant(event, grant_id):
    """One row (for redrawing it after a refused revoke), or None."""
    row = db.session.execute(select(*_COLUMNS).where(
        view.event_id == event.id, view.grant_id == grant_id)).first()
    return Participant(**row._mapping) if row else None


# --- CSV ----------------------------------------------------------------------

CSV_HEADER = ("Name", "E-mail", "Phone", "Role", "Room", "Source", "Granted at (UTC)", "Has an account")
def _csv_record(row):
    return (row.name, row.email, row.phone, row.role_name, row.room_name or "Whole event", row.source,
            row.granted_at.strftime("%Y-%m-%d %H:%M:%S"), "no" if row.is_pending else "yes")


def participants_csv(event, filters):
    """The whole filtered list as CSV chunks (never cached: it is a download, and large)."""
    return stream_csv(CSV_HEADER, _ordered(select(*_COLUMNS).where(*_conditions(event, filters))),
                      lambda row: _csv_record(Participant(**row._mapping)), db.session)
