"""`flask seed demo`: an organisation, an event and a few people to sign in as.
`flask seed huge`: a catalog at scale (300,000 events, 3,000,000 tickets) for benchmarks."""
import random
import re
import secrets
import time as clock
import uuid
from contextlib import contextmanager
from datetime import timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import select, text

from app.accounts.services import create_organization, create_personal_account
from app.extensions import db
from app.models import (Account, AccountKind, AccountOwner, Event, EventStatus, Order, OrderItem, OrderStatus,
                        PaymentMethod, Retailer, Room, RoomKind, Ticket, TicketStatus, TicketType, User)
from app.models.base import UTCDateTime, utcnow

seed = AppGroup("seed", help="Load data for development and benchmarks.")

DEMO_ORG = "Northwind Live"
DEMO_PEOPLE = [
    ("organiser@example.com", "Olivia Organiser", "Olivia"),
    ("host@example.com", "Hugo Host", "Hugo"),
    ("fan@example.com", "Fatima Fan", "Fatima"),
]


def _user(email, name, display_name):
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name, display_name=display_name)
        db.session.add(user)
        db.session.flush()
        user.current_account = create_personal_account(user)
    return user


@seed.command("demo")
def seed_demo():
    """Idempotent: running it twice changes nothing."""
    people = [_user(*person) for person in DEMO_PEOPLE]
    organiser = people[0]
    org = db.session.scalar(select(Account).where(Account.name == DEMO_ORG))
    if org is None:
        org = create_organization(organiser, DEMO_ORG)
        db.session.add(AccountOwner(account=org, user=people[1]))
    if db.session.scalar(select(Event).where(Event.account_id == org.id)) is None:
        _demo_event(org, host=people[1], fan=people[2])
    db.session.commit()
    click.echo(f"Demo data ready: {DEMO_ORG} with an event; sign in as any of "
               + ", ".join(email for email, _, _ in DEMO_PEOPLE)
               + " (the code is printed in the worker's log).")


# Words for generated events: a city matches about 1 event in 60, a genre 1 in 40,
# a genre and a city together about 1 in 2,400 (what bench/catalog.py searches for).
ADJECTIVES = ["Midnight", "Golden", "Electric", "Acoustic", "Late", "Sunday", "Open", "Secret", "Grand", "Little",
              "Wild", "Quiet", "Velvet", "Neon", "Silver", "Summer", "Winter", "Autumn", "Spring", "Rooftop",
              "Underground", "Intimate", "Big", "First", "Final", "Lunar", "Solar", "Northern", "Southern",
              "Eastern", "Western", "Urban", "Rural", "Classic", "Modern", "Future", "Vintage", "Cosmic",
              "Crimson", "Blue"]
GENRES = ["Jazz", "Blues", "Soul", "Funk", "Techno", "House", "Disco", "Folk", "Punk", "Metal", "Indie", "Pop",
          "Rock", "Hip-hop", "Reggae", "Salsa", "Tango", "Flamenco", "Fado", "Opera", "Baroque", "Choral",
          "Ambient", "Gospel", "Country", "Bluegrass", "Afrobeat", "Cumbia", "Samba", "Bossa", "Klezmer",
          "Ska", "Grunge", "Swing", "Bebop", "Trance", "Dubstep", "Garage", "Comedy", "Poetry"]
FORMATS = ["Night", "Session", "Sessions", "Live", "Showcase", "Festival", "Marathon", "Jam", "Masterclass",
           "Q&A", "Listening Party", "Launch", "Tour Stop", "Unplugged", "Takeover", "Weekender", "Matinee",
           "Soirée", "Gala", "Residency"]
CITIES = ["Lisbon", "Porto", "Madrid", "Barcelona", "Seville", "Paris", "Lyon", "Marseille", "Brussels", "Antwerp",
          "Amsterdam", "Rotterdam", "Berlin", "Hamburg", "Munich", "Cologne", "Vienna", "Zurich", "Geneva", "Milan",
          "Rome", "Naples", "Turin", "Athens", "Istanbul", "Warsaw", "Krakow", "Prague", "Budapest", "Bucharest",
          "Sofia", "Belgrade", "Zagreb", "Ljubljana", "Copenhagen", "Stockholm", "Oslo", "Helsinki", "Tallinn",
          "Riga", "Vilnius", "Dublin", "Belfast", "London", "Manchester", "Glasgow", "Edinburgh", "Bristol",
          "Cardiff", "Reykjavik", "Lagos", "Nairobi", "Cairo", "Accra", "Dakar", "Montreal", "Toronto", "Chicago",
          "Austin", "Seattle"]
FIRST_NAMES = ["Ana", "Bruno", "Carla", "Dara", "Emil", "Farah", "Goran", "Hana", "Idris", "Joana", "Kofi", "Lena",
               "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa", "Samir", "Tove", "Uma", "Viktor", "Wren",
               "Ximena", "Yusuf", "Zofia", "Amara", "Bastien", "Chiara", "Dmitri", "Elif", "Felix", "Greta",
               "Hugo", "Ines", "Jonas", "Keiko", "Luca", "Mira", "Nils"]
LAST_NAMES = ["Almeida", "Berger", "Castillo", "Dubois", "Eriksen", "Fontaine", "Garcia", "Haddad", "Ivanova",
              "Jansen", "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quintero", "Rossi",
              "Schmidt", "Tanaka", "Urquhart", "Varga", "Weber", "Xu", "Yilmaz", "Zielinski", "Abara", "Brennan",
              "Costa", "Demir", "Esposito", "Ferreira", "Gallagher", "Horvat", "Iqbal", "Jovanovic", "Keller",
              "Larsen", "Mensah", "Nakamura"]
VENUES = ["the Old Cinema", "Riverside Hall", "the Warehouse", "Studio 4", "the Glasshouse", "the Crypt",
          "Harbour Stage", "the Observatory", "the Library Garden", "Union Chapel", "the Boiler Room",
          "the Roof Terrace", "the Grand Ballroom", "the Arches", "the Tram Depot"]
EXTRAS = ["Fans can join the stage for a song.", "Stay after the show for a live Q&A.",
          "Recorded for everyone with a ticket.", "Chat with the band backstage before the doors open.",
          "Limited meet & greet places.", "A set list chosen by the audience.", "Bring your questions.",
          "Streams in high definition.", "With special guests.", "Doors open thirty minutes before."]
ORGANISER_SUFFIXES = ["Live", "Productions", "Presents", "Collective", "Sound", "Stage", "Records", "Events"]
TIMEZONES = ["UTC", "Europe/Lisbon", "Europe/London", "Europe/Paris", "Europe/Berlin", "America/New_York",
             "America/Chicago", "Africa/Lagos"]
GA_PRICES = [500, 1000, 1500, 2000, 2500, 3500, 4500, 6000]


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50]


class HugeCatalog:
    """Generates the rows of `flask seed huge`, batch by batch.

    `tickets` is exact: that many rows in tickets (with their orders and order items),
    and every ticket type's `sold` counts its tickets, as checkout keeps them. Times go
    in as the database stores them (`stamp`), converted once per order, not per ticket.
    """

    def __init__(self, events, tickets, organisers, rng, now, stamp):
        self.rng, self.now, self.stamp = rng, now, stamp
        self.run = f"{secrets.randbelow(4096):03X}"  # keeps slugs and order numbers apart across runs
        self.account_ids = [uuid.uuid4().hex for _ in range(organisers)]
        # Statuses first: the ticket total is shared out over the events that sell.
        self.plans = [self._plan() for _ in range(events)]
        self.selling_left = sum(1 for _, _, status in self.plans if status != EventStatus.DRAFT)
        self.tickets_left = tickets
        self.orders_made = 0

    def _plan(self):
        """(start, duration, status): starts from 120 days ago to 600 days ahead, in 15-minute slots."""
        start = self.now.replace(second=0, microsecond=0) + timedelta(
            minutes=15 * self.rng.randint(-120 * 96, 600 * 96))
        start -= timedelta(minutes=start.minute % 15)
        roll = self.rng.random()
        duration = timedelta(minutes=30 * (self.rng.randint(2, 6) if roll < .89 else self.rng.randint(8, 16)
                                           if roll < .99 else self.rng.randint(96, 192)))  # 1% last 2-4 days
        if start + duration < self.now:
            status = EventStatus.ACTIVE if self.rng.random() < .6 else EventStatus.ARCHIVED
        else:
            status = EventStatus.ACTIVE if self.rng.random() < .9 else EventStatus.DRAFT
        return start, duration, status

    def accounts(self):
        return [{"id": account_id, "kind": AccountKind.ORGANIZATION, "created_at": self.stamp(self.now),
                 "name": f"{self.rng.choice(CITIES)} {self.rng.choice(LAST_NAMES)} "
                         f"{self.rng.choice(ORGANISER_SUFFIXES)}"}
                for account_id in self.account_ids]

    def batch(self, first, last):
        """Rows for events[first:last], as {table: rows}."""
        rows = {table: [] for table in ("events", "rooms", "ticket_types", "orders", "order_items", "tickets")}
        for number in range(first, last):
            self._event(number, *self.plans[number], rows)
        return rows

    def _event(self, number, starts_at, duration, status, rows):
        rng = self.rng
        genre, city, performer = rng.choice(GENRES), rng.choice(CITIES), \
            f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        name = rng.choice([f"{rng.choice(ADJECTIVES)} {genre} {rng.choice(FORMATS)}",
                           f"{performer}: {genre} {rng.choice(FORMATS)}", f"{genre} {rng.choice(FORMATS)} in {city}"])
        event_id = uuid.uuid4().hex
        created = min(starts_at, self.now) - timedelta(days=rng.randint(1, 90))
        created_stamp = self.stamp(created)
        rows["events"].append({
            "id": event_id, "account_id": rng.choice(self.account_ids), "slug": f"{_slug(name)}-{self.run}-{number}",
            "name": name, "description": f"{performer} brings {genre.lower()} to {rng.choice(VENUES)}, {city}. "
                                         f"{rng.choice(EXTRAS)}",
            "status": status, "starts_at": self.stamp(starts_at), "ends_at": self.stamp(starts_at + duration),
            "timezone": rng.choice(TIMEZONES), "cover_image_key": None, "allow_pay_later": False,
            "is_featured": status == EventStatus.ACTIVE and rng.random() < .005,
            "created_at": created_stamp, "updated_at": created_stamp})
        for position, (room_name, kind) in enumerate([("Main stage", RoomKind.MAIN), ("Backstage", RoomKind.BACKSTAGE)]):
            rows["rooms"].append({"id": uuid.uuid4().hex, "event_id": event_id, "name": room_name, "kind": kind,
                                  "livekit_room_name": f"room-{uuid.uuid4().hex}", "is_main_room": kind == RoomKind.MAIN,
                                  "capacity": None, "position": position, "stage_slots": 4, "created_at": created_stamp})
        sold_total = self._tickets_for_next_event() if status != EventStatus.DRAFT else 0
        kinds = self._ticket_kinds()
        shares = self._split(sold_total, len(kinds))
        sold_out_event = rng.random() < .08
        for position, ((type_name, price, is_upgrade), sold) in enumerate(zip(kinds, shares)):
            sold_out = sold and (sold_out_event or rng.random() < .12)
            capacity = sold if sold_out else sold + rng.randint(5, 60) + int(sold * rng.uniform(.1, .8))
            type_id = uuid.uuid4().hex
            rows["ticket_types"].append({
                "id": type_id, "event_id": event_id, "name": type_name, "description": "", "price_cents": price,
                "currency": "EUR", "capacity": capacity, "sold": sold, "held": 0, "sales_starts_at": None,
                "sales_ends_at": None, "max_per_order": 10, "is_upgrade": is_upgrade, "sku": None,
                "position": position, "created_at": created_stamp})
            self._orders(event_id, type_id, price, sold, starts_at, duration, created, rows)

    def _tickets_for_next_event(self):
        """About an even share of what is left, so the total comes out exact."""
        self.selling_left -= 1
        share = self.tickets_left if self.selling_left == 0 else min(
            self.tickets_left, round(self.tickets_left / (self.selling_left + 1) * self.rng.uniform(0, 2)))
        self.tickets_left -= share
        return share

    def _ticket_kinds(self):
        rng = self.rng
        if rng.random() < .2:  # free events, some with a paid supporter ticket
            return [("Free entry", 0, False)] + ([("Supporter", 1000, False)] if rng.random() < .3 else [])
        price = rng.choice(GA_PRICES)
        return [[("General admission", price, False)],
                [("General admission", price, False), ("Meet & greet", price * 3, True)],
                [("Early bird", price * 7 // 10, False), ("General admission", price, False),
                 ("Meet & greet", price * 3, True)]][rng.randint(0, 2)]

    def _split(self, total, parts):
        weights = [self.rng.random() + .1 for _ in range(parts)]
        shares = [int(total * weight / sum(weights)) for weight in weights]
        shares[0] += total - sum(shares)
        return shares

    def _orders(self, event_id, type_id, price, sold, starts_at, duration, created, rows):
        rng = self.rng
        ended = starts_at + duration < self.now
        while sold:
            quantity = min(sold, rng.randint(1, 4))
            sold -= quantity
            self.orders_made += 1
            bought = self.stamp(created + (min(starts_at, self.now) - created) * rng.random())
            order_id, item_id = uuid.uuid4().hex, uuid.uuid4().hex
            rows["orders"].append({
                "id": order_id, "number": f"SD{self.run}{self.orders_made:07X}", "event_id": event_id,
                "user_id": None, "retailer": Retailer.DIRECT, "external_id": None, "status": OrderStatus.PAID,
                "payment_method": PaymentMethod.FREE if price == 0 else PaymentMethod.STRIPE,
                "total_cents": price * quantity, "currency": "EUR",
                "buyer_email": f"buyer{self.orders_made % 250_000}@example.com", "buyer_name": None,
                "idempotency_key": None, "stripe_session_id": None, "created_at": bought, "paid_at": bought,
                "marked_paid_by_id": None, "cancelled_at": None})
            rows["order_items"].append({"id": item_id, "order_id": order_id, "ticket_type_id": type_id,
                                        "hold_id": None, "quantity": quantity, "unit_price_cents": price})
            for _ in range(quantity):
                checked_in = self.stamp(starts_at + timedelta(minutes=rng.randint(0, 30))) \
                    if ended and rng.random() < .7 else None
                rows["tickets"].append({
                    "id": uuid.uuid4().hex, "code": secrets.token_urlsafe(18), "order_id": order_id,
                    "order_item_id": item_id, "ticket_type_id": type_id, "event_id": event_id,
                    "holder_user_id": None, "status": TicketStatus.VALID, "checked_in_at": checked_in,
                    "checked_in_by_id": None, "created_at": bought})


HUGE_TABLES = {"events": Event, "rooms": Room, "ticket_types": TicketType, "orders": Order,
               "order_items": OrderItem, "tickets": Ticket}


def seed_huge_catalog(events, tickets, batch, organisers=None, random_seed=None, progress=None):
    """Insert the catalog in batches of `batch` events, one commit each; returns row counts."""
    with db.engine.connect() as connection, _bulk_load_settings(connection):
        stamp = UTCDateTime().dialect_impl(connection.dialect).bind_processor(connection.dialect)
        catalog = HugeCatalog(events, tickets, organisers or max(1, events // 100), random.Random(random_seed),
                              utcnow(), stamp)
        counts = dict.fromkeys(HUGE_TABLES, 0)
        with connection.begin():
            _insert_many(connection, Account.__table__, catalog.accounts())
        for first in range(0, events, batch):
            last = min(first + batch, events)
            with connection.begin():
                for table, rows in catalog.batch(first, last).items():
                    _insert_many(connection, HUGE_TABLES[table].__table__, rows)
                    counts[table] += len(rows)
            if progress:
                progress(last - first)
    return counts


def _insert_many(connection, table, rows):
    """One executemany of ready-to-store values: no per-row work in SQLAlchemy.
    (COPY on PostgreSQL measured no faster: the indexes and foreign keys cost the time.)"""
    if not rows:
        return
    columns = [column.name for column in table.columns]
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})",
        [tuple(row[column] for column in columns) for row in rows])


@contextmanager
def _bulk_load_settings(connection):
    """SQLite: the rows are consistent by construction, so skip the foreign-key lookups
    (they double the insert time), and keep a big page cache, as random ids land all
    over every index. Put back before the connection returns to the pool."""
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("PRAGMA foreign_keys = OFF")  # outside a transaction, or it is ignored
    connection.exec_driver_sql("PRAGMA cache_size = -524288")  # 512 MiB
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys = ON")
        connection.exec_driver_sql("PRAGMA cache_size = -2000")


def analyze_database():
    """Fresh planner statistics after a bulk load (and, on PostgreSQL, the visibility map
    that index-only scans need)."""
    if db.engine.dialect.name == "sqlite":
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")


@seed.command("huge")
@click.option("--events", default=300_000, show_default=True, type=click.IntRange(min=1),
              help="Events to create (about 75% active and not ended).")
@click.option("--tickets", default=3_000_000, show_default=True, type=click.IntRange(min=0),
              help="Tickets sold: rows in tickets, with their orders and order items.")
@click.option("--batch", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Events per batch: one executemany per table, one commit. Bigger batches "
                   "rewrite the random-id index pages fewer times.")
@click.option("--organisers", type=click.IntRange(min=1), help="Organisations owning the events [events / 100].")
@click.option("--random-seed", type=int, help="Same seed, same catalog (ids and dates aside).")
def seed_huge(events, tickets, batch, organisers, random_seed):
    """A catalog at scale for benchmarks. Adds to what is there."""
    started = clock.monotonic()
    with click.progressbar(length=events, label="Events, rooms, ticket types, orders, tickets",
                           show_pos=True, show_eta=True) as bar:
        counts = seed_huge_catalog(events, tickets, batch, organisers, random_seed, progress=bar.update)
    click.echo("Updating planner statistics…")
    analyze_database()
    click.echo(", ".join(f"{count:,} {table}" for table, count in counts.items())
               + f" in {clock.monotonic() - started:.0f} s.")


def _demo_event(org, host, fan):
    """Launch Night: published, with free and meet-and-greet tickets, a host, and a fan
    holding a meet-and-greet place (so the backstage queue can be tried at once)."""
    from app.access.services import grant_role
    from app.manage.services import create_event, create_ticket_type, publish_event

    starts = (utcnow() + timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    event = create_event(org, name="Launch Night, live", slug="launch-night",
                         description="An evening of music and conversation, with fans on stage.",
                         starts_at=starts, ends_at=starts + timedelta(hours=2), timezone="Europe/London")
    main = event.main_room
    always_on_sale = {"sales_starts_at": None, "sales_ends_at": None, "sku": None}
    create_ticket_type(event, room_ids=[main.id], name="Watch live", description="The show, live on video.",
                       price_cents=0, currency="EUR", capacity=500, max_per_order=4, is_upgrade=False,
                       **always_on_sale)
    create_ticket_type(event, room_ids=[main.id], name="Meet & greet",
                       description="The show, and a place in the queue to join the artist on stage.",
                       price_cents=2500, currency="EUR", capacity=20, max_per_order=1, is_upgrade=True,
                       **always_on_sale)
    publish_event(event)
    grant_role(event, "host", user=host)
    grant_role(event, "vip", user=fan)
    return event


def register(app):
    app.cli.add_command(seed)
