"""Sign-in by e-mail code: the rules a user and an attacker meet."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Account, AccountOwner, LoginCode, SignInEvent, User
from app.models.base import utcnow
from tests.conftest import csrf_token, post

EMAIL = "newcomer@example.com"


def request_code(client, email=EMAIL):
    return post(client, "/auth/login/email", {"email": email})


def send_code(client, code):
    return post(client, "/auth/verify", {"code": code}, token_from="/auth/verify")


def test_first_sign_in_creates_user_and_personal_account(app, client, outbox, run_jobs, ctx):
    response = request_code(client, "  NewComer@Example.com ")
    assert response.status_code == 302 and response.location.endswith("/auth/verify")
    assert "n•••@example.com" in client.get("/auth/verify").get_data(as_text=True)
    run_jobs()
    [message] = outbox.to(EMAIL)
    assert message["Subject"] == "Your Eventuall sign-in code"

    response = send_code(client, outbox.latest_code(EMAIL))
    assert response.status_code == 302 and response.location.endswith("/dashboard")

    user = db.session.scalar(select(User).where(User.email == EMAIL))
    assert user.last_sign_in_at is not None
    account = db.session.get(Account, user.current_account_id)
    assert account.is_personal
    assert db.session.scalar(select(AccountOwner.user_id).where(AccountOwner.account_id == account.id)) == user.id
    # the live database logged the sign-in
    assert db.session.scalar(select(SignInEvent.method).where(SignInEvent.user_id == user.id)) == "email"
    assert "Recent sign-ins" in client.get("/profile").get_data(as_text=True)


def test_code_is_stored_hashed(client, outbox, run_jobs, ctx):
    request_code(client)
    run_jobs()
    code = outbox.latest_code(EMAIL)
    row = db.session.scalar(select(LoginCode))
    assert row.code_hash and code not in row.code_hash and len(row.code_hash) == 64


def test_second_sign_in_finds_the_same_user(client, sign_in, app, ctx):
    sign_in(EMAIL)
    client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    sign_in(EMAIL)
    assert db.session.scalar(select(func.count()).select_from(User)) == 1
    assert db.session.scalar(select(func.count()).select_from(Account)) == 1


@pytest.mark.parametrize("email, message", [
    ("", "Enter your e-mail address."),
    ("not-an-address", "That does not look like an e-mail address."),
    ("a" * 250 + "@example.com", "That e-mail address is too long."),
])
def test_bad_address_is_refused_in_the_form(client, email, message, ctx):
    response = request_code(client, email)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(LoginCode)) == 0


def test_htmx_request_gets_the_form_fragment_with_the_error(client):
    response = client.post("/auth/login/email", data={"email": "nope", "csrf_token": csrf_token(client)},
                           headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="sign-in"' in body and "<html" not in body
    assert response.headers["Vary"].startswith("HX-Request") or "HX-Request" in response.headers["Vary"]


def test_htmx_success_redirects_with_hx_redirect(client, ctx):
    response = client.post("/auth/login/email", data={"email": EMAIL, "csrf_token": csrf_token(client)},
                           headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response.headers["HX-Redirect"].endswith("/auth/verify")


def test_wrong_code_is_refused_and_sixth_try_is_refused_even_when_right(client, outbox, run_jobs, ctx):
    request_code(client)
    run_jobs()
    right = outbox.latest_code(EMAIL)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for _ in range(5):
        response = send_code(client, wrong)
        assert response.status_code == 400
        assert "That code is not right" in response.get_data(as_text=True)
    response = send_code(client, right)
    assert response.status_code == 429
    assert "Too many wrong tries" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(User)) == 0
    assert db.session.scalar(select(LoginCode.attempts)) == 5


def test_expired_code_is_refused(client, outbox, run_jobs, ctx):
    request_code(client)
    run_jobs()
    db.session.execute(update(LoginCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    response = send_code(client, outbox.latest_code(EMAIL))
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_codes_expire_after_ten_minutes(client, ctx):
    request_code(client)
    row = db.session.scalar(select(LoginCode))
    assert timedelta(minutes=9, seconds=50) < row.expires_at - row.created_at <= timedelta(minutes=10)


def test_a_used_code_cannot_be_replayed(app, client, outbox, run_jobs, ctx):
    request_code(client)
    run_jobs()
    code = outbox.latest_code(EMAIL)
    assert send_code(client, code).status_code == 302
    # a second browser that watched the code go by tries it
    other = app.test_client()
    with other.session_transaction() as session:
        session["pending_sign_in"] = {"channel": "email", "destination": EMAIL}
    response = post(other, "/auth/verify", {"code": code}, token_from="/auth/verify")
    assert response.status_code == 400
    assert "already used" in response.get_data(as_text=True)


def test_a_new_code_retires_the_old_one(client, outbox, run_jobs):
    request_code(client)
    run_jobs()
    first = outbox.latest_code(EMAIL)
    request_code(client)
    run_jobs()
    second = outbox.latest_code(EMAIL)
    if first != second:
        assert send_code(client, first).status_code == 400
    assert send_code(client, second).status_code == 302


@pytest.mark.parametrize("code", ["", "12345", "abcdef", "1234567", "12 34 5x"])
def test_malformed_code_is_a_422_and_costs_no_try(client, code, ctx):
    request_code(client)
    response = send_code(client, code)
    assert response.status_code == 422
    assert "Enter the 6 digits" in response.get_data(as_text=True)
    assert db.session.scalar(select(LoginCode.attempts)) == 0


def test_verify_without_a_pending_sign_in_goes_back_to_the_form(client):
    response = post(client, "/auth/verify", {"code": "123456"})
    assert response.status_code == 302 and response.location.endswith("/auth/login")


def test_response_does_not_say_whether_an_address_exists(client, make_user):
    make_user("known@example.com")
    known = request_code(client, "known@example.com")
    unknown = request_code(client, "unknown@example.com")
    assert known.status_code == unknown.status_code == 302
    assert known.location == unknown.location
    known_page = client.get("/auth/verify").get_data(as_text=True).replace("k•••", "X")
    assert "u•••@example.com" in known_page  # the page only echoes the (masked) address typed


def test_code_requests_are_rate_limited_per_address(client, ctx):
    statuses = [request_code(client).status_code for _ in range(6)]
    assert statuses[:5] == [302] * 5
    assert statuses[5] == 429
    assert "too many times" in request_code(client).get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(LoginCode)) == 5
    # another address from the same place still works
    assert request_code(client, "someone.else@example.com").status_code == 302


def test_code_requests_are_rate_limited_per_ip(app, client):
    app.config["RATELIMIT_CODE_REQUEST_IP"] = "3 per hour"
    try:
        statuses = [request_code(client, f"person{i}@example.com").status_code for i in range(4)]
    finally:
        app.config["RATELIMIT_CODE_REQUEST_IP"] = "30 per hour"
    assert statuses == [302, 302, 302, 429]


def test_code_guesses_are_rate_limited_per_address(client, ctx):
    request_code(client)
    statuses = []
    for _ in range(12):
        db.session.execute(update(LoginCode).values(attempts=0))  # keep the code alive
        db.session.commit()
        statuses.append(send_code(client, "000000").status_code)
    assert 429 in statuses and statuses.index(429) == 10


def test_forged_csrf_token_is_refused_and_writes_nothing(client, ctx):
    client.get("/auth/login")
    response = client.post("/auth/login/email", data={"email": EMAIL, "csrf_token": "forged"})
    assert response.status_code == 400
    assert "did not come from Eventuall" in response.get_data(as_text=True)
    response = client.post("/auth/login/email", data={"email": EMAIL})
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(LoginCode)) == 0


def test_htmx_csrf_header_is_accepted(client, ctx):
    token = csrf_token(client)
    response = client.post("/auth/login/email", data={"email": EMAIL},
                           headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 204


def test_next_parameter_only_allows_local_paths(client, outbox, run_jobs):
    client.get("/auth/login?next=https://evil.example/steal")
    request_code(client)
    run_jobs()
    response = send_code(client, outbox.latest_code(EMAIL))
    assert response.location.endswith("/dashboard")


def test_next_parameter_returns_to_the_page_asked_for(client, outbox, run_jobs):
    response = client.get("/accounts")
    assert response.status_code == 302 and "/auth/login" in response.location
    client.get(response.location)
    request_code(client)
    run_jobs()
    response = send_code(client, outbox.latest_code(EMAIL))
    assert response.location.endswith("/accounts")


def test_sign_out(user_client):
    client, _ = user_client
    response = client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/dashboard")})
    assert response.status_code == 302
    assert client.get("/dashboard").status_code == 302


def test_sign_out_is_not_a_get(user_client):
    client, _ = user_client
    assert client.get("/auth/logout").status_code == 405
    assert client.get("/dashboard").status_code == 200


def test_the_code_never_reaches_the_logs(client, outbox, run_jobs, caplog):
    caplog.set_level("DEBUG")
    request_code(client)
    run_jobs()
    code = outbox.latest_code(EMAIL)
    send_code(client, code)
    # aiosmtpd ("mail.log") is the recipient's mail server in this test, not our app
    assert not [r for r in caplog.records if code in r.getMessage() and not r.name.startswith("mail.log")]
