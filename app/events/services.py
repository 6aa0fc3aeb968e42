"""The public catalog (home, event list and search, organiser pages) and the event page.

Lists are keyset pages ordered by (starts_at, id): the cursor names the last event
shown, so a page 150,000 events deep is one index seek, like the first. Only active
events that have not ended are listed.
"""
import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, literal_column, select, table, text, true, tuple_
from sqlalchemy.orm import joinedload, selectinload

from app.access.services import can, is_on_team
from app.errors import DomainError, NotFound
from app.extensions import db
from app.models import Account, Event, EventStatus, TicketType
from app.models.base import utcnow
from app.models.events import RUNS_OVER_A_DAY

PAGE_SIZE = 20
SEARCH_WORD = re.compile(r"\w+")
# PostgreSQL: name + description as a tsvector, a stored generated column with a GIN
# index (catalog migration; not in the model, SQLite has no such type).
POSTGRES_DOCUMENT = "events.events_fts_document"
BAD_CURSOR = "This page link is broken or out of date. Start again from the first page."


@dataclass(frozen=True)
class CatalogFilters:
    text: str = ""
    starts_from: date | None = None    # events starting on or after this day (UTC)
    starts_until: date | None = None   # ... and on or before this one
    price: str | None = None           # "free": some ticket type is free; "paid": some costs money
    available_only: bool = False       # some ticket type has seats left (sold + held < capacity)
    account_id: str | None = None
    featured_only: bool = False


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after the event with this start time and id."""

    starts_at: datetime
    event_id: str


@dataclass(frozen=True)
class CatalogPage:
    events: list
    next_cursor: str | None


def encode_cursor(starts_at, event_id):
    raw = f"{starts_at.astimezone(UTC).isoformat()}|{event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token):
    """The `after` of a page link; None for the first page. A tampered one is a 400."""
    if not token:
        return None
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
        starts_at, event_id = raw.split("|")
        starts_at = datetime.fromisoformat(starts_at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise DomainError(BAD_CURSOR, 400) from None
    if starts_at.tzinfo is None or not 0 < len(event_id) <= 32:
        raise DomainError(BAD_CURSOR, 400)
    return Cursor(starts_at.astimezone(UTC), event_id)


def catalog_page(filters, after=None, limit=PAGE_SIZE, now=None):
    """One page of listable events matching `filters`, after the cursor `after`."""
    now = now or utcnow()
    keys = _listing_keys(filters, after, limit + 1, now)
    next_cursor = encode_cursor(*keys[limit - 1]) if len(keys) > limit else None
    return CatalogPage(_events_in_order([event_id for _, event_id in keys[:limit]]), next_cursor)


def upcoming_events(limit=12):
    return catalog_page(CatalogFilters(), limit=limit).events


def featured_events(limit=6):
    return catalog_page(CatalogFilters(featured_only=True), limit=limit).events


def public_account(account_id):
    account = db.session.get(Account, account_id)
    if account is None:
        raise NotFound("There is no such organiser.")
    return account


def _listing_keys(filters, after, limit, now):
    """(starts_at, id) of the next `limit` listable events, in order.

    Ended events stay in the listing index before `now`, and that history only grows:
    walking past it would make page 1 slower every day. An event still running that
    started over a day ago must last over a day, so the list is read in two ranges that
    follow each other in (starts_at, id) order:
    1. events that started over a day ago: only multi-day ones can still run, and the
       partial index events_multiday_idx holds just those (about 1 event in 100);
    2. events that started within the last day or later: one range of the listing index,
       past at most a day of ended events.
    A search with few matches on SQLite is the exception: see _fts_search.
    """
    dialect = db.session.get_bind().dialect.name
    conditions = [Event.ends_at > now, *_filter_conditions(filters)]
    from_start = datetime.combine(filters.starts_from, time(), UTC) if filters.starts_from else None
    words = _search_words(filters.text)
    if words and dialect == "sqlite":
        matching, few = _fts_search(words)
        if few:
            return _keys([_NOT_BY_STATUS_INDEX, *conditions, matching, *_lower_bound(after, from_start)], limit)
        conditions.append(matching)
    elif words:
        conditions.append(text(f"{POSTGRES_DOCUMENT} @@ plainto_tsquery('english', :fts_query)").bindparams(
            fts_query=" ".join(words)))
    conditions.append(Event.status == EventStatus.ACTIVE)
    recent = now - timedelta(days=1)
    keys = []
    if (after is None or after.starts_at < recent) and (from_start is None or from_start < recent):
        keys = _keys([*conditions, text(RUNS_OVER_A_DAY[dialect]), Event.starts_at < recent,
                      *_lower_bound(after, from_start)], limit)
    if len(keys) < limit:
        floor = max(recent, from_start) if from_start else recent
        keys += _keys([*conditions, *_lower_bound(after, floor)], limit - len(keys))
    return keys


# SQLite's planner knows nothing of how many events a search matches, so the way of
# reading is chosen here, by that count. Costs measured on 300,000 events:
# - few matches: read them all (about 3 us each) and sort;
# - more: walk the listing in order and test each event against the matches, gathered
#   once into a lookup table (0.15 us a match, then 0.3 us per event walked);
# - nearly every event (a word like "live"): gathering them all costs more than asking
#   the full-text index about each event walked (about 140 us each, but few are walked).
FTS_FEW_MATCHES = 1_000
FTS_MOST_EVENTS = 0.25
# The unary + keeps an index from being used for the term (SQLite's documented hint):
# with status out of reach, the matches drive the query.
_NOT_BY_STATUS_INDEX = literal_column("+events.status") == EventStatus.ACTIVE


def _fts_search(words):
    """(condition, few): the events matching every word, and whether they are few."""
    # Each word quoted: FTS5 then reads none of them as syntax (AND, NEAR, "*", ...).
    matching = text("events_fts MATCH :fts_query").bindparams(fts_query=" ".join(f'"{word}"' for word in words))
    matches = select(literal_column("rowid")).select_from(table("events_fts")).where(matching)
    events = db.session.scalar(select(func.max(literal_column("rowid"))).select_from(Event)) or 0
    most = int(FTS_MOST_EVENTS * events) + 1
    count = db.session.scalar(select(func.count()).select_from(matches.limit(most).subquery()))  # stops at `most`
    if count <= FTS_FEW_MATCHES:
        return literal_column("events.rowid").in_(matches), True
    if count == most:
        return matches.where(literal_column("events_fts.rowid") == literal_column("events.rowid")).exists(), False
    return literal_column("+events.rowid").in_(matches), False  # +: walk the listing, not the rowids


def _lower_bound(after, floor):
    """One range condition on starts_at (the index can seek on one, not on two)."""
    if after is not None and (floor is None or after.starts_at >= floor):
        return [tuple_(Event.starts_at, Event.id) > (after.starts_at, after.event_id)]
    return [Event.starts_at >= floor] if floor is not None else []


def _keys(conditions, limit):
    return db.session.execute(
        select(Event.starts_at, Event.id).where(*conditions).order_by(Event.starts_at, Event.id).limit(limit)).all()


def _filter_conditions(filters):
    conditions = []
    if filters.account_id:
        conditions.append(Event.account_id == filters.account_id)
    if filters.featured_only:
        conditions.append(Event.is_featured == true())
    if filters.starts_until:
        conditions.append(Event.starts_at <= datetime.combine(filters.starts_until, time.max, UTC))
    if filters.price or filters.available_only:
        conditions.append(_has_ticket_type(filters.price, filters.available_only))
    return conditions


def _search_words(text):
    return SEARCH_WORD.findall(text.lower())


def _has_ticket_type(price, available_only):
    """Some ticket type of the event meets every ticket condition at once."""
    ticket_type = select(TicketType.id).where(TicketType.event_id == Event.id)
    if price == "free":
        ticket_type = ticket_type.where(TicketType.price_cents == 0)
    elif price == "paid":
        ticket_type = ticket_type.where(TicketType.price_cents > 0)
    if available_only:
        ticket_type = ticket_type.where(TicketType.sold + TicketType.held < TicketType.capacity)
    return ticket_type.exists()


def _events_in_order(event_ids):
    """The events with what their cards show (organiser, ticket types), in the given order."""
    if not event_ids:
        return []
    events = db.session.scalars(
        select(Event).where(Event.id.in_(event_ids))
        .options(joinedload(Event.account), selectinload(Event.ticket_types))).unique()
    by_id = {event.id: event for event in events}
    return [by_id[event_id] for event_id in event_ids]


def events_of_account(account_id):
    return db.session.scalars(
        select(Event).where(Event.account_id == account_id).order_by(Event.starts_at)).all()


def visible_event(event_id, user):
    """Active events are public; drafts and archived ones only to the team."""
    event = db.session.get(Event, event_id)
    if event is None or (event.status != EventStatus.ACTIVE and not is_on_team(user, event)):
        raise NotFound("There is no such event.")
    return event


def ticket_types_on_sale(event, now=None):
    """Ticket types whose sales window is open now, in the organiser's order."""
    now = now or utcnow()
    if event.status != EventStatus.ACTIVE:
        return []
    return [t for t in event.ticket_types
            if (t.sales_starts_at is None or t.sales_starts_at <= now)
            and (t.sales_ends_at is None or now < t.sales_ends_at)]


def enterable_rooms(event, user):
    return [room for room in event.rooms if can(user, "room.join", event, room.id)]
