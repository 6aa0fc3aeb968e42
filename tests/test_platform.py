"""Cross-cutting promises: security headers, error pages and fragments, config, the
migrations gate, jobs through a real worker, the live database."""
import importlib
import subprocess
import sys
import time

import pytest
from sqlalchemy import select, text

import config
from app import create_app
from app.extensions import db
from app.migrations_gate import SchemaBehind, check_schema_current
from app.models import SignInEvent
from tests.conftest import app_config, csrf_token


def test_security_headers(client):
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in response.headers  # only in production


def test_session_cookie_flags(client):
    cookie = client.get("/auth/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_every_page_carries_the_csrf_header_for_htmx(client):
    assert 'hx-headers=\'{"X-CSRFToken": "' in client.get("/").get_data(as_text=True)


def test_404_is_a_page_or_a_fragment(client):
    page = client.get("/nowhere")
    assert page.status_code == 404 and "<html" in page.get_data(as_text=True)
    fragment = client.get("/nowhere", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 404 and "<html" not in body and 'id="error"' in body
    assert "Page not found" in body


def test_boosted_request_gets_the_whole_page(client):
    response = client.get("/auth/login", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in response.get_data(as_text=True)


def test_405_for_the_wrong_method(client):
    assert client.put("/auth/login").status_code == 405


def test_unexpected_error_is_a_clean_500_page_without_details(app, base_dir, smtp_server):
    fresh = create_app("testing", **app_config(base_dir, smtp_server.port))

    @fresh.get("/_explode")
    def explode():
        raise RuntimeError("secret internals")

    response = fresh.test_client().get("/_explode")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong" in body and "secret internals" not in body


def test_postgres_urls_are_rewritten_for_sqlalchemy():
    assert config.database_url("postgres://u:p@h:5432/d", "x.db") == "postgresql+psycopg://u:p@h:5432/d"
    assert config.database_url("postgresql://u@h/d", "x.db") == "postgresql+psycopg://u@h/d"
    assert config.database_url(None, "x.db").startswith("sqlite:///") and config.database_url(
        None, "x.db").endswith("x.db")


def test_live_bind_follows_a_postgres_database_url(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/d")
    monkeypatch.delenv("LIVE_DATABASE_URL", raising=False)
    try:
        reloaded = importlib.reload(config)
        assert reloaded.Config.SQLALCHEMY_BINDS["live"] == "postgresql+psycopg://u@h/d"
    finally:
        monkeypatch.undo()
        importlib.reload(config)


@pytest.mark.parametrize("secret", [None, config.DEV_SECRET_KEY, "short"])
def test_production_refuses_a_missing_or_default_secret_key(monkeypatch, secret):
    if secret is None:
        monkeypatch.delenv("SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app("production")


def test_production_sets_hsts_and_secure_cookies(monkeypatch, app, base_dir, smtp_server):
    monkeypatch.setenv("SECRET_KEY", "p" * 64)
    prod = create_app("production", **app_config(base_dir, smtp_server.port, SESSION_COOKIE_SECURE=True))
    response = prod.test_client().get("/auth/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Secure" in response.headers["Set-Cookie"]


def test_migrations_gate_passes_at_head_and_stops_when_behind(app, base_dir, smtp_server):
    gated = create_app("testing", **app_config(base_dir, smtp_server.port, CHECK_MIGRATIONS=True))
    check_schema_current(gated)  # the suite's schema is at head
    with gated.app_context():
        engine = db.engines["live"]
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version_live SET version_num = 'stale0000000'"))
        try:
            with pytest.raises(SchemaBehind, match="live at stale0000000.*flask db upgrade"):
                check_schema_current(gated)
        finally:
            head = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
            with engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version_live SET version_num = :v"), {"v": head})


def test_worker_refuses_to_start_on_a_database_behind(tmp_path):
    """The real worker process, pointed at empty databases, exits with the message."""
    env = {"PATH": "/usr/bin:/bin", "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "w" * 40,
           "DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"}
    result = subprocess.run([sys.executable, "worker.py"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "schema is behind the code" in result.stderr


def test_email_job_goes_through_the_worker_to_smtp(app, outbox, run_jobs):
    from app.jobs.email import queue_email
    with app.app_context():
        job = queue_email("zoe@example.com", "Hello", "Body text")
    assert job.description == "send_email to zoe@example.com"
    assert outbox.to("zoe@example.com") == []  # nothing leaves before the worker runs it
    run_jobs()
    [message] = outbox.to("zoe@example.com")
    assert message["Subject"] == "Hello" and "Body text" in message.get_body(("plain",)).get_content()


def test_sign_ins_are_logged_in_the_live_database(user_client, ctx):
    _, user_id = user_client
    engine = db.engines["live"]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT method FROM sign_in_events WHERE user_id = :u"), {"u": user_id}).all()
    assert rows == [("email",)]
    assert db.session.scalar(select(SignInEvent.user_id)) == user_id


@pytest.mark.parametrize("path", ["/orders/abc%00def", "/tickets/x%00", "/events?q=a%00b", "/manage?q=%00"])
def test_nul_bytes_in_urls_are_a_clear_400(user_client, path):
    client, _ = user_client
    response = client.get(path)
    assert response.status_code == 400
    assert "cannot contain NUL" in response.get_data(as_text=True)


def test_nul_bytes_in_forms_are_a_clear_400(user_client):
    client, _ = user_client
    response = client.post("/profile", data={"name": "A\x00B", "csrf_token": csrf_token(client, "/profile")})
    assert response.status_code == 400


def test_demo_seed_is_ready_to_try_the_stage_and_idempotent(app, ctx):
    from app.access.services import can
    from app.models import AccessGrant, Event, TicketType, User

    runner = app.test_cli_runner()
    for _ in range(2):  # running it again changes nothing
        result = runner.invoke(args=["seed", "demo"])
        assert result.exit_code == 0 and "Demo data ready" in result.output
    [event] = db.session.scalars(select(Event)).all()
    assert event.status == "active" and event.main_room is not None
    assert {t.name: t.is_upgrade for t in db.session.scalars(select(TicketType))} == {
        "Watch live": False, "Meet & greet": True}
    users = {u.email: u for u in db.session.scalars(select(User))}
    assert can(users["host@example.com"], "stage.manage", event, event.main_room.id)
    fan = users["fan@example.com"]
    assert can(fan, "stage.appear", event, event.main_room.id) and not can(fan, "stage.manage", event)
    assert len(db.session.scalars(select(AccessGrant)).all()) == 2


def test_connections_the_database_closed_are_replaced_without_an_error(user_client, app):
    """PostgreSQL restarted or dropped our idle connections: the next pages still load
    (the pool's checkout sees the hang-up on the socket and connects anew)."""
    with app.app_context():
        engine = db.engines[None]
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to hang up")
    import psycopg

    client, _ = user_client
    assert client.get("/dashboard").status_code == 200  # the pool holds a connection now
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        others = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                  "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        pids = [pid for (pid,) in admin.execute(others)]
        assert pids
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        deadline = time.monotonic() + 10
        while set(pids) & {pid for (pid,) in admin.execute(others)} and time.monotonic() < deadline:
            time.sleep(0.05)
    for _ in range(3):
        assert client.get("/dashboard").status_code == 200
