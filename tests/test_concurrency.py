"""Writes that must not race, raced with real threads on the real database."""
import threading

import pytest
from sqlalchemy import func, select

from app.extensions import db, limiter
from app.models import AccountOwner, LoginCode
from tests.conftest import csrf_token

pytestmark = pytest.mark.concurrency


def race(workers):
    """Start every worker at the same moment; return their results."""
    barrier = threading.Barrier(len(workers))
    results = [None] * len(workers)

    def run(i, work):
        barrier.wait()
        results[i] = work()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_two_owners_removing_each_other_never_leave_the_account_ownerless(
        app, sign_in, make_user, make_org, ctx):
    alice, bob = make_user("alice@example.com"), make_user("bob@example.com")
    clients = [sign_in(email, app.test_client()) for email in ("alice@example.com", "bob@example.com")]
    tokens = [csrf_token(c, "/dashboard") for c in clients]
    for round_ in range(15):
        org = make_org(alice, bob, name=f"Org {round_}")
        statuses = race([
            lambda: clients[0].post(f"/accounts/{org}/owners/{bob}/remove", data={"csrf_token": tokens[0]}).status_code,
            lambda: clients[1].post(f"/accounts/{org}/owners/{alice}/remove", data={"csrf_token": tokens[1]}).status_code,
        ])
        remaining = db.session.scalar(select(func.count()).select_from(AccountOwner)
                                      .where(AccountOwner.account_id == org))
        assert remaining == 1, f"round {round_}: {statuses}"
        assert sorted(statuses) in ([200, 404], [200, 409]), statuses  # one wins; the other is told why


def test_parallel_guesses_cannot_exceed_the_try_limit(app, ctx):
    """Twenty browsers guess the same address's code at once: at most 5 tries count."""
    email = "target@example.com"
    first = app.test_client()
    first.post("/auth/login/email", data={"email": email, "csrf_token": csrf_token(first)})
    clients = []
    for _ in range(20):
        c = app.test_client()
        with c.session_transaction() as session:
            session["pending_sign_in"] = {"channel": "email", "destination": email}
        clients.append((c, csrf_token(c, "/auth/verify")))
    limiter.enabled = False  # the per-address limit would answer first; this is about the code's own count
    try:
        statuses = race([lambda c=c, t=t: c.post("/auth/verify", data={"code": "000000", "csrf_token": t}).status_code
                         for c, t in clients])
    finally:
        limiter.enabled = True
    assert db.session.scalar(select(LoginCode.attempts)) == 5
    assert statuses.count(400) == 5 and statuses.count(429) == 15


def test_the_same_code_submitted_twice_at_once_signs_in_once(app, outbox, run_jobs, ctx):
    email = "twice@example.com"
    clients = [app.test_client(), app.test_client()]
    clients[0].post("/auth/login/email", data={"email": email, "csrf_token": csrf_token(clients[0])})
    run_jobs()
    code = outbox.latest_code(email)
    with clients[1].session_transaction() as session:
        session["pending_sign_in"] = {"channel": "email", "destination": email}
    tokens = [csrf_token(c, "/auth/verify") for c in clients]
    statuses = race([lambda c=c, t=t: c.post("/auth/verify", data={"code": code, "csrf_token": t}).status_code
                     for c, t in zip(clients, tokens)])
    assert sorted(statuses) == [302, 400]
    assert db.session.scalar(select(LoginCode.consumed_at)) is not None
