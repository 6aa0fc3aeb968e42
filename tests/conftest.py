"""Fixtures: one app per session built through the migrations, a clean database and
Redis per test, a real SMTP outbox, a real RQ worker, sign-in through the code flow.

TEST_DATABASE_URL switches the suite to PostgreSQL; TEST_REDIS_URL to a real Redis
(else an embedded one).
"""
import os
import re
import tempfile
import time

import pytest

os.environ.setdefault("INSTANCE_PATH", tempfile.mkdtemp(prefix="eventuall-test-"))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import db, redis  # noqa: E402
from app.jobs.worker import AppWorker  # noqa: E402
from app.redis_client import stop_embedded_redis  # noqa: E402
from tests.fakes.smtp import SmtpServer  # noqa: E402

# Tables filled by migrations (reference data), kept between tests.
SEEDED_TABLES = {"alembic_version", "alembic_version_live",
                 "permissions", "roles", "role_permissions", "role_inheritances"}


def database_urls(base):
    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{base}/test.db"
    live = os.environ.get("TEST_LIVE_DATABASE_URL") or (
        url if url.startswith("postgres") else f"sqlite:///{base}/test-live.db")
    return url, live


def app_config(base, smtp_port, **overrides):
    url, live = database_urls(base)
    return {
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_BINDS": {"live": live},
        "REDIS_URL": os.environ.get("TEST_REDIS_URL"),
        "UPLOAD_DIR": os.path.join(base, "uploads"),
        "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_port, "MAIL_USE_TLS": False,
        **overrides,
    }


def reset_schema(app):
    """Drop everything, then build the schema through the migrations."""
    with app.app_context():
        for engine in db.engines.values():
            if engine.dialect.name == "postgresql":
                with engine.begin() as conn:
                    conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            else:
                path = engine.url.database
                engine.dispose()
                for suffix in ("", "-wal", "-shm"):
                    if path and os.path.exists(path + suffix):
                        os.remove(path + suffix)
        upgrade()


def empty_tables():
    """Delete every row except reference data; fast enough to run before each test."""
    for bind, metadata in db.metadatas.items():
        engine = db.engines[bind]
        tables = [t for t in reversed(metadata.sorted_tables) if t.name not in SEEDED_TABLES]
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # A transaction a failed test left open would make TRUNCATE wait forever.
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                                  "AND state LIKE 'idle in transaction%'"))
                conn.execute(text("SET LOCAL lock_timeout = '20s'"))
                if tables:
                    conn.execute(text("TRUNCATE " + ", ".join(f'"{t.name}"' for t in tables) + " CASCADE"))
            else:
                for table in tables:
                    conn.execute(table.delete())
                # ANALYZE statistics of one test's data (the huge seed) would steer the next
                # one's plans; dropping them changes the schema, so every connection reloads.
                conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
                conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat4")


@pytest.fixture(scope="session")
def smtp_server():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("eventuall"))


@pytest.fixture(scope="session")
def app(base_dir, smtp_server):
    app = create_app("testing", **app_config(base_dir, smtp_server.port))
    reset_schema(app)
    yield app
    dispose_app(app)
    stop_embedded_redis()


def dispose_app(an_app):
    """Stop a built app's room hub and close its database pools."""
    from app.rooms.live import hub_for

    hub_for(an_app).stop()
    with an_app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def make_app(app, base_dir, smtp_server):
    """Factory: another app with these settings, on `app`'s schema; disposed after the test."""
    built = []

    def make(**settings):
        built.append(create_app("testing", **app_config(base_dir, smtp_server.port, **settings)))
        return built[-1]
    yield make
    for an_app in built:
        dispose_app(an_app)


@pytest.fixture(autouse=True)
def clean_state(request):
    """Each test starts with empty tables, an empty Redis and an empty outbox."""
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    smtp = request.getfixturevalue("smtp_server")
    with app.app_context():
        empty_tables()
        redis.flushdb()
    smtp.outbox.clear()
    yield
    with app.app_context():
        db.session.remove()


# --- LiveKit, against the fake server ------------------------------------------------------

LIVEKIT_KEY = "APIfakekey"
LIVEKIT_SECRET = "fake-livekit-secret-0123456789abcdef0123456789"


@pytest.fixture(scope="session")
def fake_livekit():
    from tests.fakes.livekit import FakeLiveKit

    server = FakeLiveKit(LIVEKIT_KEY, LIVEKIT_SECRET).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lk_app(app, base_dir, smtp_server, fake_livekit):
    """The app with LiveKit configured (ws:// as in production), against the fake."""
    return create_app("testing", **app_config(
        base_dir, smtp_server.port, LIVEKIT_URL="ws" + fake_livekit.url[len("http"):],
        LIVEKIT_API_KEY=LIVEKIT_KEY, LIVEKIT_API_SECRET=LIVEKIT_SECRET))


@pytest.fixture(autouse=True)
def _reset_fake_livekit(request):
    if "fake_livekit" in request.fixturenames:
        request.getfixturevalue("fake_livekit").reset()


@pytest.fixture
def room(data_app, make_event):
    """An active event's rooms: {event_id, main, backstage, main_name, backstage_name}
    (ids, and the LiveKit room names)."""
    from app.models import Event

    event_id = make_event()
    with data_app.app_context():
        event = db.session.get(Event, event_id)
        backstage = next(r for r in event.rooms if not r.is_main_room)
        return {"event_id": event_id, "main": event.main_room.id, "backstage": backstage.id,
                "main_name": event.main_room.livekit_room_name, "backstage_name": backstage.livekit_room_name}


# --- the room's sockets ---------------------------------------------------------------------

class RecordingSocket:
    """Stands where a browser's websocket would: records the fragments the hub sends."""

    def __init__(self):
        self.sent = []

    def send(self, text):
        self.sent.append(text)

    def text(self):
        return "\n".join(self.sent)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="session")
def data_app(app, base_dir, smtp_server):
    """A twin of `app` for reading and writing rows from the test itself.

    Flask reuses an app context that is already pushed for the same app when the
    test client makes a request, which would share `g` (CSRF token, signed-in
    user) and the DB session between requests. A separate app object keeps them
    apart.
    """
    return create_app("testing", **app_config(base_dir, smtp_server.port))


@pytest.fixture
def ctx(data_app):
    """An app context for calling services and reading rows directly."""
    with data_app.app_context():
        yield
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def outbox(smtp_server):
    return smtp_server.outbox


@pytest.fixture
def run_jobs(app):
    """Run every queued job with a real RQ worker, as worker.py would."""
    def run():
        with app.app_context():
            queues = [redis.queue(name) for name in app.config["RQ_QUEUES"]]
            AppWorker(queues, connection=redis.client).work(burst=True)
    return run


CSRF_RE = re.compile(r'"X-CSRFToken": "([^"]+)"')


def csrf_token(client, path="/auth/login"):
    """The token a page hands the browser (every page carries it in hx-headers)."""
    match = CSRF_RE.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post(client, path, data=None, token_from="/auth/login", **kwargs):
    """POST a form the way a browser would: with the page's CSRF token."""
    data = dict(data or {})
    data.setdefault("csrf_token", csrf_token(client, token_from))
    return client.post(path, data=data, **kwargs)


@pytest.fixture
def sign_in(client, outbox, run_jobs):
    """Sign a test client in through the real e-mail code flow."""
    def sign_in_as(email, a_client=None):
        a_client = a_client or client
        response = post(a_client, "/auth/login/email", {"email": email})
        assert response.status_code == 302, response.get_data(as_text=True)
        run_jobs()
        response = post(a_client, "/auth/verify", {"code": outbox.latest_code(email)}, token_from="/auth/verify")
        assert response.status_code == 302, response.get_data(as_text=True)
        return a_client
    return sign_in_as


@pytest.fixture
def make_user(app):
    """Factory: a user who has signed up before (with a personal account)."""
    from app.accounts.services import create_personal_account
    from app.models import User

    def make(email=None, **fields):
        with app.app_context():
            user = User(email=email or f"user{os.urandom(3).hex()}@example.com", **fields)
            db.session.add(user)
            db.session.flush()
            user.current_account = create_personal_account(user)
            db.session.commit()
            return user.id
    return make


@pytest.fixture
def make_org(app):
    """Factory: an organisation owned by the given user ids."""
    from app.models import Account, AccountKind, AccountOwner

    def make(*owner_ids, name="Acme Live"):
        with app.app_context():
            account = Account(name=name, kind=AccountKind.ORGANIZATION)
            db.session.add(account)
            db.session.flush()
            for user_id in owner_ids:
                db.session.add(AccountOwner(account_id=account.id, user_id=user_id))
            db.session.commit()
            return account.id
    return make


@pytest.fixture
def user_client(app, sign_in, make_user):
    """A signed-in user: (client, user id)."""
    user_id = make_user("alice@example.com", name="Alice Example")
    return sign_in("alice@example.com"), user_id


@pytest.fixture
def owner_client(user_client, make_org):
    """An organisation owner: (client, user id, account id)."""
    client, user_id = user_client
    return client, user_id, make_org(user_id, name="Alice Productions")


@pytest.fixture
def make_event(data_app, make_user, make_org):
    """Factory: an active event (main room + backstage) in a new or given account; returns its id."""
    from datetime import timedelta

    from app.models import Event, EventStatus, Room, RoomKind
    from app.models.base import utcnow

    def make(status=EventStatus.ACTIVE, account_id=None, name="Launch Night", timezone="UTC",
             starts_in=timedelta(days=3), **fields):
        with data_app.app_context():
            starts = (utcnow() + starts_in).replace(microsecond=0)
            event = Event(account_id=account_id or make_org(make_user()), slug=os.urandom(4).hex(), name=name,
                          status=status, starts_at=starts, ends_at=starts + timedelta(hours=2),
                          timezone=timezone, **fields)
            event.rooms = [Room(name="Main stage", kind=RoomKind.MAIN, is_main_room=True, position=0),
                           Room(name="Backstage", kind=RoomKind.BACKSTAGE, position=1)]
            db.session.add(event)
            db.session.commit()
            return event.id
    return make


@pytest.fixture
def make_ticket_type(data_app):
    """Factory: a ticket type granting the event's main room; returns its id."""
    from app.models import Event, TicketType

    def make(event_id, capacity=50, price_cents=0, max_per_order=10, **fields):
        with data_app.app_context():
            event = db.session.get(Event, event_id)
            ticket_type = TicketType(event_id=event_id, name=fields.pop("name", "General admission"),
                                     capacity=capacity, price_cents=price_cents, max_per_order=max_per_order,
                                     **fields)
            ticket_type.rooms = [event.main_room]
            db.session.add(ticket_type)
            db.session.commit()
            return ticket_type.id
    return make
