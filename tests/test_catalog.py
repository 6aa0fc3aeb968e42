"""The public catalog: home, list, search, filters, keyset pages, organiser pages, and
the query plans that keep them fast at 300,000 events (bench/catalog.py measures)."""
import re
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import bindparam, event as sa_event, select, text, update

from app.events import services
from app.events.services import CatalogFilters
from app.extensions import db
from app.models import Event, EventStatus
from app.models.base import UTCDateTime, utcnow

CARD_ID = re.compile(r'<li class="card event-card" id="event-(\w+)"')
NEXT_LINK = re.compile(r'<a class="button secondary" href="([^"]+)" rel="next"')


def card_ids(body):
    return CARD_ID.findall(body)


def next_link(body):
    match = NEXT_LINK.search(body)
    return match and match.group(1).replace("&amp;", "&")


def set_dates(event_id, starts_in, lasts):
    """Move an event (make_event gives 2 hours, from now + starts_in)."""
    starts = (utcnow() + starts_in).replace(microsecond=0)
    db.session.execute(update(Event).where(Event.id == event_id).values(starts_at=starts, ends_at=starts + lasts))
    db.session.commit()


# Search

def test_search_matches_a_word_of_the_name_or_the_description(client, make_event):
    by_name = make_event(name="Midnight Fado Session")
    by_description = make_event(name="Quiet Evening", description="Old fado songs, sung by candlelight.")
    make_event(name="Techno Marathon", description="Loud.")
    body = client.get("/events?q=fado").get_data(as_text=True)
    assert set(card_ids(body)) == {by_name, by_description}
    # every word must match; case and plurals do not matter
    assert card_ids(client.get("/events?q=FADO+candlelight").get_data(as_text=True)) == [by_description]
    assert card_ids(client.get("/events?q=sessions").get_data(as_text=True)) == [by_name]


def test_search_leaves_out_drafts_archived_and_ended_events(client, make_event, ctx):
    listed = make_event(name="Fado Night")
    make_event(name="Fado Draft", status=EventStatus.DRAFT)
    make_event(name="Fado Archive", status=EventStatus.ARCHIVED)
    ended = make_event(name="Fado Yesterday")
    set_dates(ended, -timedelta(hours=5), timedelta(hours=2))
    assert card_ids(client.get("/events?q=fado").get_data(as_text=True)) == [listed]


def test_search_syntax_is_taken_as_words(client, make_event):
    event_id = make_event(name="Jazz AND Blues Night")
    for query in ['"jazz', "jazz*", "(jazz", "jazz -blues", "blues: jazz", "jazz AND"]:
        response = client.get("/events", query_string={"q": query})
        assert response.status_code == 200, query
        assert card_ids(response.get_data(as_text=True)) == [event_id], query
    assert card_ids(client.get("/events?q=%21%21%21").get_data(as_text=True)) == [event_id]  # no words: no search


def test_search_index_follows_renames_and_deletes(client, make_event, ctx):
    event_id = make_event(name="Klezmer Brunch")
    db.session.get(Event, event_id).name = "Ska Brunch"
    db.session.commit()
    assert card_ids(client.get("/events?q=klezmer").get_data(as_text=True)) == []
    assert card_ids(client.get("/events?q=ska").get_data(as_text=True)) == [event_id]
    db.session.delete(db.session.get(Event, event_id))
    db.session.commit()
    assert card_ids(client.get("/events?q=brunch").get_data(as_text=True)) == []


def test_the_migration_indexes_events_that_were_there_before_it(app, make_org, make_user, client):
    account_id = make_org(make_user())
    with app.app_context():
        downgrade(revision="2d2aece4adb9")
        starts = utcnow() + timedelta(days=2)
        db.session.execute(text(
            "INSERT INTO events (id, account_id, slug, name, description, status, starts_at, ends_at, timezone, "
            "created_at, updated_at, allow_pay_later) VALUES ('0ld', :account, 'old', 'Bluegrass Picnic', '', "
            "'active', :starts, :ends, 'UTC', :starts, :starts, false)").bindparams(
                bindparam("starts", type_=UTCDateTime), bindparam("ends", type_=UTCDateTime)),
            {"account": account_id, "starts": starts, "ends": starts + timedelta(hours=2)})
        db.session.commit()
        upgrade()
    assert card_ids(client.get("/events?q=bluegrass").get_data(as_text=True)) == ["0ld"]


# Filters

def test_price_and_availability_filters(client, make_event, make_ticket_type):
    free = make_event(name="Free Show")
    make_ticket_type(free, price_cents=0)
    paid = make_event(name="Paid Show")
    make_ticket_type(paid, price_cents=2500)
    sold_out = make_event(name="Sold Out Show")
    make_ticket_type(sold_out, price_cents=0, capacity=10, sold=8, held=2)
    both = make_event(name="Both Show")  # a free ticket that is gone, a paid one left
    make_ticket_type(both, price_cents=0, capacity=5, sold=5)
    make_ticket_type(both, price_cents=900, name="Supporter")
    no_tickets = make_event(name="No Tickets Yet")

    def listed(query):
        return set(card_ids(client.get(f"/events?{query}").get_data(as_text=True)))

    assert listed("") == {free, paid, sold_out, both, no_tickets}
    assert listed("price=free") == {free, sold_out, both}
    assert listed("price=paid") == {paid, both}
    assert listed("available=1") == {free, paid, both}
    # one ticket type must meet both: "both" has no free ticket left
    assert listed("price=free&available=1") == {free}
    assert listed("available=0") == listed("")


def test_date_range_filter_is_inclusive_by_day(client, make_event, ctx):
    day = (utcnow() + timedelta(days=10)).replace(hour=12, minute=0, second=0, microsecond=0)
    ids = {}
    for offset in (-1, 0, 1, 2):
        ids[offset] = make_event(name=f"Day {offset}")
        set_dates(ids[offset], day + timedelta(days=offset) - utcnow().replace(microsecond=0), timedelta(hours=1))
    first, last = day.date(), (day + timedelta(days=1)).date()
    body = client.get(f"/events?from={first}&to={last}").get_data(as_text=True)
    assert set(card_ids(body)) == {ids[0], ids[1]}
    assert set(card_ids(client.get(f"/events?from={last}").get_data(as_text=True))) == {ids[1], ids[2]}


@pytest.mark.parametrize("query, message", [
    ("from=2026-13-45", "Not a valid date value"),
    ("to=yesterday", "Not a valid date value"),
    ("from=2027-02-01&to=2027-01-01", "The end date is before the start date."),
    ("price=cheap", "Not a valid choice"),
    ("q=" + "x" * 201, "Search for at most 200 characters."),
])
def test_bad_filters_are_422_with_the_reason(client, query, message):
    response = client.get(f"/events?{query}")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    fragment = client.get(f"/events?{query}", headers={"HX-Request": "true"})
    assert fragment.status_code == 422 and "<html" not in fragment.get_data(as_text=True)


@pytest.mark.parametrize("cursor", ["nonsense!", "bm90IGEgY3Vyc29y", "MjAyNi0wMS0wMXw", "eHx5",
                                    "MjAyNi0wMS0wMVQwMDowMDowMHxhYmM"])  # the last: no time zone
def test_bad_cursor_is_400(client, cursor):
    response = client.get(f"/events?after={cursor}")
    assert response.status_code == 400
    assert "Start again from the first page" in response.get_data(as_text=True)
    assert client.get(f"/events?after={cursor}", headers={"HX-Request": "true"}).status_code == 400


def test_unknown_organiser_is_404(client):
    assert client.get("/organisers/nope").status_code == 404


# Keyset pages

@pytest.fixture
def many_events(make_event, make_org, make_user, ctx):
    """45 listable events, many starting at the same minute, some running for days, and
    a few that must not show; returns the listable ids in catalog order."""
    account_id = make_org(make_user())
    listable = []
    for n in range(40):
        # five events per start time: the id decides their order
        listable.append(make_event(account_id=account_id, name=f"Show {n}", starts_in=timedelta(hours=1 + n // 5)))
    for days_ago in (3, 10):  # multi-day festivals that started long ago and still run
        festival = make_event(account_id=account_id, name=f"Festival {days_ago}")
        set_dates(festival, -timedelta(days=days_ago), timedelta(days=days_ago + 2))
        listable.append(festival)
    for hours_ago in (2, 20):  # started today, still running
        running = make_event(account_id=account_id, name=f"Running {hours_ago}")
        set_dates(running, -timedelta(hours=hours_ago), timedelta(hours=hours_ago + 1))
        listable.append(running)
    late = make_event(account_id=account_id, name="Late show", starts_in=timedelta(days=30))
    listable.append(late)
    for days_ago in (2, 40):  # ended, one of them a multi-day one
        ended = make_event(account_id=account_id, name=f"Ended {days_ago}")
        set_dates(ended, -timedelta(days=days_ago), timedelta(days=1, hours=1))
    make_event(account_id=account_id, name="Draft", status=EventStatus.DRAFT, starts_in=timedelta(hours=2))
    events = db.session.scalars(db.select(Event).where(Event.id.in_(listable))).all()
    return account_id, [e.id for e in sorted(events, key=lambda e: (e.starts_at, e.id))]


def test_keyset_pages_cover_every_event_once_in_order(client, many_events):
    _, expected = many_events
    seen, url, pages = [], "/events", 0
    while url:
        body = client.get(url).get_data(as_text=True)
        seen += card_ids(body)
        url, pages = next_link(body), pages + 1
    assert seen == expected and pages == 3


def test_load_more_returns_the_next_cards_and_link_only(client, many_events):
    _, expected = many_events
    first = client.get("/events").get_data(as_text=True)
    assert card_ids(first) == expected[:20]
    more = client.get(next_link(first), headers={"HX-Request": "true"})
    body = more.get_data(as_text=True)
    assert more.status_code == 200 and "HX-Request" in more.headers["Vary"]
    assert "<html" not in body and 'id="results"' not in body
    assert body.lstrip().startswith("<li") and card_ids(body) == expected[20:40]
    assert 'data-testid="load-more"' in body and 'hx-target="closest li"' in body
    last = client.get(next_link(body), headers={"HX-Request": "true"}).get_data(as_text=True)
    assert card_ids(last) == expected[40:] and "load-more" not in last


def test_a_page_link_works_without_htmx_and_keeps_the_filters(client, many_events):
    _, expected = many_events
    named_show = set(db.session.scalars(select(Event.id).where(Event.name.ilike("%show%"))))
    shows = [event_id for event_id in expected if event_id in named_show]
    first = client.get("/events?q=show&available=0").get_data(as_text=True)
    link = next_link(first)
    assert "q=show" in link and "after=" in link and "available" not in link
    page = client.get(link).get_data(as_text=True)
    assert "<html" in page and "Back to the first page" in page
    assert card_ids(first) + card_ids(page) == shows[:40]


def test_a_new_search_swaps_the_whole_result_list(client, many_events):
    body = client.get("/events?q=festival", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert body.lstrip().startswith('<section class="results" id="results"') and "<html" not in body
    assert len(card_ids(body)) == 2


# Organiser page and home

def test_organiser_page_lists_only_its_active_upcoming_events(client, many_events, make_event, make_org, make_user):
    account_id, expected = many_events
    make_event(account_id=make_org(make_user(), name="Someone Else"), name="Not theirs")
    seen, url = [], f"/organisers/{account_id}"
    while url:
        body = client.get(url).get_data(as_text=True)
        seen += card_ids(body)
        url = next_link(body)
    assert seen == expected
    empty = make_org(make_user(), name="Quiet Org")
    assert "Quiet Org has no upcoming events." in client.get(f"/organisers/{empty}").get_data(as_text=True)


def test_home_shows_featured_and_upcoming(client, make_event, make_ticket_type):
    featured = make_event(name="Star Night", is_featured=True, starts_in=timedelta(days=20))
    make_ticket_type(featured, price_cents=1250)
    soon = make_event(name="Soon Show", starts_in=timedelta(hours=3))
    make_event(name="Featured Draft", is_featured=True, status=EventStatus.DRAFT)
    page = client.get("/").get_data(as_text=True)
    featured_section = page.split('id="featured"')[1].split("</section>")[0]
    upcoming_section = page.split('id="upcoming"')[1].split("</section>")[0]
    assert card_ids(featured_section) == [featured]
    assert card_ids(upcoming_section) == [soon, featured]
    assert "From 12.50 EUR" in featured_section and "Featured Draft" not in page


def test_event_card_links_to_the_event_and_its_organiser(client, make_event, make_org, make_user):
    account_id = make_org(make_user(), name="Northwind Live")
    event_id = make_event(account_id=account_id)
    body = client.get("/events").get_data(as_text=True)
    assert f'href="/events/{event_id}"' in body and f'href="/organisers/{account_id}"' in body
    assert f'href="/organisers/{account_id}">Northwind Live</a>' in client.get(f"/events/{event_id}").get_data(
        as_text=True)


# Query plans: every catalog query reads an index, never the whole events table.

@contextmanager
def captured_selects():
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))
    engine = db.engine
    sa_event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        sa_event.remove(engine, "before_cursor_execute", capture)


def plans_of(statements):
    """The plan of each statement, as one text; PostgreSQL is told to avoid seq scans
    whenever it can, so a missing index shows (it would scan tiny tables anyway)."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return ["\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + sql, params))
                for sql, params in statements]
    return ["\n".join(row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
            for sql, params in statements]


def assert_reads_indexes(plan, dialect):
    if dialect == "sqlite":
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan or "USING INTEGER PRIMARY KEY" in plan, plan
        assert not re.search(r"^SCAN events$", plan, re.M), plan  # a scan of the whole table
    else:
        assert "Index" in plan or "Bitmap" in plan, plan
        assert "Seq Scan on events" not in plan, plan


def catalog_plans(call):
    with captured_selects() as statements:
        call()
    listing = [s for s in statements if s[0].lstrip().startswith("SELECT events.starts_at, events.id")]
    assert listing
    return plans_of(listing)


def test_list_deep_page_and_search_plans_use_indexes(many_events, ctx):
    _, expected = many_events
    dialect = db.engine.dialect.name
    deep = db.session.get(Event, expected[30])
    cursor = services.decode_cursor(services.encode_cursor(deep.starts_at, deep.id))
    first_page = catalog_plans(lambda: services.catalog_page(CatalogFilters()))
    assert len(first_page) == 2  # the multi-day range, then the listing range
    deep_page = catalog_plans(lambda: services.catalog_page(CatalogFilters(), cursor))
    search = catalog_plans(lambda: services.catalog_page(CatalogFilters(text="show festival")))
    filtered = catalog_plans(lambda: services.catalog_page(CatalogFilters(price="free", available_only=True)))
    organiser = catalog_plans(lambda: services.catalog_page(CatalogFilters(account_id=many_events[0])))
    for plan in [*first_page, *deep_page, *search, *filtered, *organiser]:
        assert_reads_indexes(plan, dialect)
    if dialect == "sqlite":
        assert "events_multiday_idx" in first_page[0] and "events_listing_idx" in first_page[1]
        assert "events_listing_idx (status=? AND (starts_at,id)>(?,?))" in deep_page[0]
        assert "events_fts VIRTUAL TABLE" in search[0] and "USING INTEGER PRIMARY KEY (rowid=?)" in search[0]
        assert "ticket_types_event_price_idx" in filtered[-1]
    else:
        assert "events_multiday_idx" in first_page[0] and "events_listing_idx" in first_page[1]
        assert "events_listing_idx" in deep_page[0]
        # On so few rows it walks the listing index and tests each; on many the GIN index
        # must be there to ask.
        document_only = plans_of([(f"SELECT id FROM events WHERE {services.POSTGRES_DOCUMENT} "
                                   "@@ plainto_tsquery('english', 'show')", {})])
        assert "Bitmap Index Scan on events_fts_gin_idx" in document_only[0]



def test_a_search_with_many_matches_walks_the_listing_with_the_same_result(client, many_events, monkeypatch, ctx):
    """SQLite reads few matches and sorts them, or walks the listing for many, testing
    each event against the gathered matches, or, when nearly all match, asking the
    full-text index per event (services.FTS_FEW_MATCHES, FTS_MOST_EVENTS); PostgreSQL's
    planner makes that choice itself."""
    def all_pages(query):
        seen, url = [], f"/events?q={query}"
        while url:
            body = client.get(url).get_data(as_text=True)
            seen += card_ids(body)
            url = next_link(body)
        return seen
    by_matches = all_pages("show")
    monkeypatch.setattr(services, "FTS_FEW_MATCHES", 0)
    monkeypatch.setattr(services, "FTS_MOST_EVENTS", 1)
    assert all_pages("show") == by_matches and len(by_matches) == 41
    if db.engine.dialect.name == "sqlite":
        walk = catalog_plans(lambda: services.catalog_page(CatalogFilters(text="show")))
        assert "events_multiday_idx" in walk[0] and "events_listing_idx" in walk[1]
        assert all("LIST SUBQUERY" in plan and "events_fts VIRTUAL TABLE" in plan for plan in walk)
    monkeypatch.setattr(services, "FTS_MOST_EVENTS", 0)
    assert all_pages("show") == by_matches
    if db.engine.dialect.name == "sqlite":
        probe = catalog_plans(lambda: services.catalog_page(CatalogFilters(text="show")))
        assert "events_listing_idx" in probe[1] and "CORRELATED SCALAR SUBQUERY" in probe[1]


# flask seed huge (last: its ANALYZE leaves planner statistics behind)

def test_seed_huge_makes_a_consistent_catalog(app, client, ctx):
    result = app.test_cli_runner().invoke(args=["seed", "huge", "--events", "300", "--tickets", "2000",
                                                "--batch", "64", "--random-seed", "7"])
    assert result.exit_code == 0, result.output
    assert "300 events" in result.output and "2,000 tickets" in result.output
    counts = db.session.execute(text(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM rooms), (SELECT sum(sold) FROM ticket_types), "
        "(SELECT count(*) FROM tickets), (SELECT count(*) FROM ticket_types t WHERE t.sold != "
        "(SELECT count(*) FROM tickets WHERE ticket_type_id = t.id))")).one()
    assert tuple(counts) == (300, 600, 2000, 2000, 0)
    # stored as the application stores them: the catalog pages through them all, once each
    total = db.session.scalar(select(db.func.count()).select_from(Event).where(
        Event.status == EventStatus.ACTIVE, Event.ends_at > utcnow()))
    seen, url = [], "/events"
    while url:
        body = client.get(url).get_data(as_text=True)
        seen += card_ids(body)
        url = next_link(body)
    assert len(seen) == len(set(seen)) == total > 100
    assert card_ids(client.get("/events?q=lisbon").get_data(as_text=True)) or card_ids(
        client.get("/events?q=jazz").get_data(as_text=True))
