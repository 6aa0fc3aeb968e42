"""Every query behind the organiser dashboard and the participants list uses an index.

The statements a page really runs are captured while it renders, then explained:
on PostgreSQL with sequential scans disabled (a Seq Scan left in the plan means
no index can serve the query), on SQLite with EXPLAIN QUERY PLAN (a bare
"SCAN table" is a full scan). Full reads of the small seeded role tables are fine.
"""
import sqlite3

import pytest
from sqlalchemy import event

from app.access.services import grant_role
from app.extensions import db
from app.models import Event, User
from tests.conftest import csrf_token, post

SEEDED = ("permissions", "roles", "role_permissions", "role_inheritances")


def captured_selects(app, request_page, status=200):
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and "pg_" not in statement:
            statements.append((conn.engine, statement, parameters))

    with app.app_context():  # the engines the pages run on (not the test's own twin app)
        engines = list(db.engines.values())
    for engine in engines:
        event.listen(engine, "before_cursor_execute", capture)
    try:
        response = request_page()
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", capture)
    assert response.status_code == status
    return statements


def full_scans(engine, statement, parameters):
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
            conn.rollback()
            return [line for line in plan.splitlines() if "Seq Scan" in line
                    and not any(f" on {table}" in line for table in SEEDED)], plan
    # A fresh connection: a pooled one may still plan with statistics an earlier test's ANALYZE left.
    fresh = sqlite3.connect(engine.url.database)
    try:
        plan = "\n".join(row[3] for row in fresh.execute("EXPLAIN QUERY PLAN " + statement, parameters))
    finally:
        fresh.close()
    scans = [line for line in plan.splitlines()
             if line.strip().startswith("SCAN") and "USING" not in line and "CONSTANT ROW" not in line
             and not any(line.strip().split()[1] == table for table in SEEDED)]
    return scans, plan


@pytest.fixture
def busy_event(owner_client, make_event, make_user, make_ticket_type, ctx):
    """An organisation with a few events, one with people in several roles."""
    client, owner_id, org_id = owner_client
    events = [make_event(account_id=org_id, name=f"Show {i}") for i in range(3)]
    make_ticket_type(events[0])
    people = [make_user(f"person{i}@example.com") for i in range(4)]  # each factory call commits on its own
    event_row = db.session.get(Event, events[0])
    for user_id, role in zip(people, ["attendee", "host", "talent", "viewer"]):
        grant_role(event_row, role, user=db.session.get(User, user_id))
    db.session.commit()
    post(client, f"/accounts/{org_id}/switch", token_from="/dashboard")
    return client, events[0]


@pytest.mark.parametrize("page", ["/manage", "/manage?status=active&q=show",
                                  "/manage/events/{event_id}/participants",
                                  "/manage/events/{event_id}/participants?q=person&role=host"])
def test_pages_only_run_indexed_queries(app, busy_event, page):
    client, event_id = busy_event
    statements = captured_selects(app, lambda: client.get(page.format(event_id=event_id)))
    assert statements, "the page ran no query?"
    for engine, statement, parameters in statements:
        scans, plan = full_scans(engine, statement, parameters)
        assert not scans, f"full scan in:\n{statement}\n{plan}"


def test_a_hold_finds_the_buyers_own_holds_by_their_index(app, user_client, make_event, make_ticket_type, ctx):
    """In a drop thousands of holds are active at once: the hold's read must reach the
    buyer's own through holds_user_type_idx, not walk every active hold (what SQLite
    chose through the status index before it existed)."""
    client, _ = user_client
    ticket_type_id = make_ticket_type(make_event())
    token = csrf_token(client, "/dashboard")
    statements = captured_selects(app, lambda: client.post(
        "/checkout/hold", data={"ticket_type_id": ticket_type_id, "quantity": 1, "csrf_token": token}), status=302)
    reads = [(engine, statement, parameters) for engine, statement, parameters in statements
             if "FROM holds" in statement]
    assert reads, "the hold read no holds?"
    for engine, statement, parameters in reads:
        scans, plan = full_scans(engine, statement, parameters)
        assert not scans, f"full scan in:\n{statement}\n{plan}"
        if engine.dialect.name == "sqlite":
            assert "holds_user_type_idx" in plan, plan


def test_the_checker_sees_a_full_scan(app, ctx):
    """The check itself can fail: a filter on an unindexed column is reported."""
    engine = db.engines[None]
    if engine.dialect.name == "postgresql":
        statement, params = "SELECT id FROM events WHERE description = %(d)s", {"d": "x"}
    else:
        statement, params = "SELECT id FROM events WHERE description = ?", ("x",)
    scans, _ = full_scans(engine, statement, params)
    assert scans
