"""Catalog benchmark: server time of the public list, a page deep in it, a search and
an event page, on whatever database DATABASE_URL names (default: the SQLite file under
INSTANCE_PATH). Made for the `flask seed huge` catalog (300,000 events).

    .venv/bin/python bench/catalog.py                   # measure what is there
    .venv/bin/python bench/catalog.py --seed 20000      # add 20,000 events first (quick runs)
    DATABASE_URL=postgresql://postgres@127.0.0.1/eventuall_bench .venv/bin/python bench/catalog.py

Each scenario runs --requests times through the WSGI app in this process (no network),
after a warm-up; the time is from the WSGI call to the last byte of the body. The goal
(issue: public catalog) is p95 < 25 ms for the first four, and the deep page within 1.5x
of page 1.
"""
import argparse
import os
import statistics
import sys
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from app import create_app  # noqa: E402
from app.cli import analyze_database, seed_huge_catalog  # noqa: E402
from app.events.services import encode_cursor  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Event, EventStatus, TicketType  # noqa: E402
from app.models.base import utcnow  # noqa: E402

GOAL_P95_MS = 25
DEEP_PAGE_RATIO = 1.5


class ServerTimer:
    """WSGI middleware: how long the app took for the last request, body included."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app
        self.last = 0.0

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        body = b"".join(self.wsgi_app(environ, start_response))
        self.last = time.perf_counter() - started
        return [body]


def listable():
    return [Event.status == EventStatus.ACTIVE, Event.ends_at > utcnow()]


def deep_cursor(depth):
    """The cursor of a page `depth` events into the list (or near its end, for a small catalog)."""
    total = db.session.scalar(select(func.count()).select_from(Event).where(*listable()))
    if total < 100:
        raise SystemExit("Fewer than 100 listable events: seed first (flask seed huge, or --seed N).")
    depth = min(depth, total - 100)
    starts_at, event_id = db.session.execute(
        select(Event.starts_at, Event.id).where(*listable()).order_by(Event.starts_at, Event.id)
        .offset(depth - 1).limit(1)).one()
    return encode_cursor(starts_at, event_id), depth, total


def sample_event_ids(count):
    """Listable events with ticket types, spread over the list (the event page shows them)."""
    with_tickets = select(TicketType.event_id).where(TicketType.event_id == Event.id).exists()
    return db.session.scalars(
        select(Event.id).where(*listable(), with_tickets, Event.starts_at > utcnow() + timedelta(days=1))
        .order_by(Event.id).limit(count)).all()


def measure(client, timer, scenarios, requests):
    """{name: (p50, p95)} in ms. Scenarios take turns, so a busy moment on the machine
    falls on all of them alike."""
    for _, urls, headers, _ in scenarios:  # warm-up: compiled queries, templates, page cache
        for url in urls[:5]:
            client.get(url, headers=headers)
    times = {name: [] for name, *_ in scenarios}
    for n in range(requests):
        for name, urls, headers, _ in scenarios:
            url = urls[n % len(urls)]
            response = client.get(url, headers=headers)
            assert response.status_code == 200, (url, response.status_code)
            times[name].append(timer.last * 1000)
    return {name: (statistics.median(values), sorted(values)[max(0, int(len(values) * .95) - 1)])
            for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per scenario [200]")
    parser.add_argument("--seed", type=int, metavar="N", help="first add N events and 10 tickets per event")
    parser.add_argument("--depth", type=int, default=150_000, help="events before the deep page [150000]")
    parser.add_argument("--search", default="jazz lisbon", help='the search [jazz lisbon]')
    parser.add_argument("--common-word", default="lisbon", help="a word in about 1 event in 60 [lisbon]")
    parser.add_argument("--everywhere-word", default="brings", help="a word in every seeded event [brings]")
    args = parser.parse_args()

    os.environ.setdefault("CHECK_MIGRATIONS", "false")
    app = create_app()
    timer = app.wsgi_app = ServerTimer(app.wsgi_app)
    client = app.test_client()
    with app.app_context():
        upgrade()
        if args.seed:
            started = time.monotonic()
            counts = seed_huge_catalog(args.seed, args.seed * 10, batch=10_000)
            analyze_database()
            print(f"seeded {counts['events']:,} events, {counts['tickets']:,} tickets "
                  f"in {time.monotonic() - started:.0f} s")
        cursor, depth, total = deep_cursor(args.depth)
        event_ids = sample_event_ids(args.requests)
        dialect = db.engine.dialect.name
    print(f"{dialect}: {total:,} listable events; deep page after {depth:,}; {args.requests} requests each")

    scenarios = [  # (name, urls, headers, has a goal)
        ("list, page 1", ["/events"], None, True),
        (f"list, page {depth:,} events deep", [f"/events?after={cursor}"], None, True),
        (f'search "{args.search}"', [f"/events?q={args.search.replace(' ', '+')}"], None, True),
        ("event page", [f"/events/{event_id}" for event_id in event_ids], None, True),
        ("home (featured + upcoming)", ["/"], None, False),
        ("load more (htmx), deep", [f"/events?after={cursor}"], {"HX-Request": "true"}, False),
        (f'search, one common word "{args.common_word}"', [f"/events?q={args.common_word}"], None, False),
        (f'search, a word in every event "{args.everywhere_word}"', [f"/events?q={args.everywhere_word}"], None,
         False),
        ("filters: free, available, a month", ["/events?price=free&available=1&from=2027-03-01&to=2027-03-31"],
         None, False),
    ]
    results = measure(client, timer, scenarios, args.requests)
    print(f"{'scenario':<44} {'p50 ms':>8} {'p95 ms':>8}")
    for name, _, _, has_goal in scenarios:
        p50, p95 = results[name]
        verdict = ("ok" if p95 < GOAL_P95_MS else f"over {GOAL_P95_MS} ms") if has_goal else ""
        print(f"{name:<44} {p50:8.1f} {p95:8.1f}  {verdict}")
    first, deep = results["list, page 1"], results[scenarios[1][0]]
    ratio = deep[1] / first[1]
    print(f"deep page p95 / page 1 p95 = {ratio:.2f} "
          f"({'ok' if ratio <= DEEP_PAGE_RATIO else 'over'} the {DEEP_PAGE_RATIO}x goal)")


if __name__ == "__main__":
    main()
