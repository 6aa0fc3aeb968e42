"""Sign-in by text message: through the real twilio SDK against a fake Twilio Verify,
and through the console adapter used in development."""
import logging
import re

import pytest
from sqlalchemy import select

from app import create_app
from app.extensions import db
from app.models import AccountKind, AccountOwner, LoginCode, User
from tests.conftest import post
from tests.conftest import app_config as config_for  # aliased: pytest would collect test_*
from tests.conftest import dispose_app
from tests.fakes.smtp import free_port
from tests.fakes.twilio import FakeTwilioVerify

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f00dfeed" * 4
SERVICE_SID = "VA" + "fedcba9876543210" * 2
PHONE = "+447700900123"
MASKED = "+44•••••0123"
SEND_FAILED = "We could not send a text message right now"


@pytest.fixture(scope="module")
def twilio_server():
    server = FakeTwilioVerify(ACCOUNT_SID, AUTH_TOKEN, SERVICE_SID).start()
    yield server
    server.stop()


@pytest.fixture
def twilio(twilio_server):
    """The fake Twilio, with no verifications and no recorded requests."""
    twilio_server.reset()
    return twilio_server


VERIFY_SETTINGS = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                   "TWILIO_VERIFY_SERVICE_SID": SERVICE_SID}


@pytest.fixture(scope="module")
def twilio_app(app, base_dir, smtp_server, twilio_server):
    """The app configured for Twilio Verify, pointed at the fake. `app` built the schema."""
    twilio_app = create_app("testing", **config_for(base_dir, smtp_server.port, **VERIFY_SETTINGS,
                                                    TWILIO_API_BASE_URL=twilio_server.url))
    yield twilio_app
    dispose_app(twilio_app)


@pytest.fixture
def make_twilio_app(make_app):
    """Factory for an app with other Twilio settings (a wrong token, an unreachable host)."""
    return lambda **settings: make_app(**{**VERIFY_SETTINGS, **settings})


@pytest.fixture
def logs(caplog):
    """caplog at INFO (alembic's logging config leaves the root at WARN)."""
    caplog.set_level(logging.INFO)
    return caplog


@pytest.fixture
def sms_client(twilio_app, twilio):
    return twilio_app.test_client()


def request_code(client, phone):
    return post(client, "/auth/login/sms", {"phone": phone})


def enter_code(client, code):
    return post(client, "/auth/verify", {"code": code}, token_from="/auth/verify")


def wrong(code):
    return f"{(int(code) + 1) % 10**6:06d}"


def login_code_rows(an_app):
    with an_app.app_context():
        return [dict(row._mapping) for row in db.session.execute(select(LoginCode.__table__))]


def assert_code_not_stored(an_app, code):
    """Twilio or Redis holds the code; our login_codes rows never do, in any column."""
    rows = login_code_rows(an_app)
    assert rows
    for row in rows:
        assert row["channel"] == "sms" and row["code_hash"] is None
        assert not any(code in value for value in row.values() if isinstance(value, str))


def assert_signed_in(client, phone):
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert f"Welcome, {phone}." in page.get_data(as_text=True)


def assert_not_signed_in(client):
    assert client.get("/dashboard").status_code == 302


# Through Twilio Verify ------------------------------------------------------


def test_sign_in_by_sms_through_twilio(sms_client, twilio, twilio_app):
    response = request_code(sms_client, "+44 7700 900 123")
    assert response.status_code == 302 and response.location.endswith("/auth/verify")

    [sent] = twilio.requests
    assert sent.path == f"/v2/Services/{SERVICE_SID}/Verifications"
    assert sent.form == {"To": PHONE, "Channel": "sms"}
    assert sent.auth_user == ACCOUNT_SID
    code = twilio.code_for(PHONE)
    assert_code_not_stored(twilio_app, code)

    page = sms_client.get("/auth/verify").get_data(as_text=True)
    assert "Check your messages" in page and MASKED in page
    assert PHONE not in page and "900 123" not in page

    response = enter_code(sms_client, code)
    assert response.status_code == 302 and response.location.endswith("/dashboard")
    [checked] = twilio.calls("VerificationCheck")
    assert checked.path == f"/v2/Services/{SERVICE_SID}/VerificationCheck"
    assert checked.form == {"To": PHONE, "Code": code}
    assert checked.auth_user == ACCOUNT_SID
    assert_signed_in(sms_client, PHONE)

    with twilio_app.app_context():
        user = db.session.scalar(select(User).where(User.phone == PHONE))
        assert user is not None and user.email is None
        assert user.current_account.kind == AccountKind.PERSONAL
        assert db.session.scalar(select(AccountOwner).where(
            AccountOwner.user_id == user.id, AccountOwner.account_id == user.current_account_id))
    assert all(row["consumed_at"] is not None for row in login_code_rows(twilio_app))


def test_wrong_code_is_refused_and_the_right_one_still_works(sms_client, twilio):
    request_code(sms_client, PHONE)
    code = twilio.code_for(PHONE)

    response = enter_code(sms_client, wrong(code))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "That code is not right" in page and MASKED in page
    assert [r.form["Code"] for r in twilio.calls("VerificationCheck")] == [wrong(code)]
    assert_not_signed_in(sms_client)

    assert enter_code(sms_client, code).status_code == 302
    assert_signed_in(sms_client, PHONE)


def test_sixth_try_is_refused_without_asking_twilio(sms_client, twilio, twilio_app):
    request_code(sms_client, PHONE)
    code = twilio.code_for(PHONE)
    for _ in range(5):
        assert enter_code(sms_client, wrong(code)).status_code == 400

    response = enter_code(sms_client, code)
    assert response.status_code == 429
    assert "Too many wrong tries" in response.get_data(as_text=True)
    assert len(twilio.calls("VerificationCheck")) == 5
    assert [row["attempts"] for row in login_code_rows(twilio_app)] == [5]
    assert_not_signed_in(sms_client)


def test_number_twilio_rejects_is_a_form_error(sms_client, twilio, twilio_app):
    twilio.invalid_numbers.add("+15005550001")  # Twilio's own "invalid number" test number

    response = request_code(sms_client, "+1 500 555 0001")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "We could not send a text message to that number" in page
    assert 'value="+1 500 555 0001"' in page  # the form keeps what was typed
    assert [r.form["To"] for r in twilio.calls("Verifications")] == ["+15005550001"]
    assert login_code_rows(twilio_app) == []
    assert sms_client.get("/auth/verify").status_code == 302  # no sign-in pending


@pytest.mark.parametrize("failure", ["wrong auth token", "Twilio error 500", "Twilio unreachable"])
def test_provider_failure_is_503_without_secrets(failure, twilio, twilio_app, make_twilio_app, logs):
    if failure == "wrong auth token":
        an_app = make_twilio_app(TWILIO_AUTH_TOKEN="0badc0de" * 4,
                                 TWILIO_API_BASE_URL=twilio.url)
    elif failure == "Twilio error 500":
        an_app, twilio.down = twilio_app, True
    else:
        an_app = make_twilio_app(TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}")
    client = an_app.test_client()

    response = request_code(client, PHONE)
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert SEND_FAILED in page and 'value="' + PHONE + '"' in page
    shown_and_logged = page + "\n".join(r.getMessage() for r in logs.records)
    assert "Twilio Verify could not send a code" in shown_and_logged
    for secret in (AUTH_TOKEN, "0badc0de" * 4, ACCOUNT_SID):
        assert secret not in shown_and_logged
    assert login_code_rows(an_app) == []
    assert client.get("/auth/verify").status_code == 302
    if failure != "Twilio unreachable":
        assert [r.auth_user for r in twilio.calls("Verifications")] == [ACCOUNT_SID]


def test_twilio_outage_during_check_does_not_spend_the_code(sms_client, twilio):
    request_code(sms_client, PHONE)
    code = twilio.code_for(PHONE)

    twilio.down = True
    response = enter_code(sms_client, code)
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "We could not check your code right now" in page and "not right" not in page

    twilio.down = False
    assert enter_code(sms_client, code).status_code == 302
    assert_signed_in(sms_client, PHONE)


def test_code_expired_at_twilio_is_refused(sms_client, twilio):
    request_code(sms_client, PHONE)
    code = twilio.code_for(PHONE)
    twilio.expire(PHONE)  # Twilio now answers 404 for this verification

    response = enter_code(sms_client, code)
    assert response.status_code == 400
    assert "That code is not right" in response.get_data(as_text=True)
    assert_not_signed_in(sms_client)


@pytest.mark.parametrize("typed, message", [
    ("", "Enter your mobile number."),
    ("call me", "Enter the number with its country code"),
    ("+44 7700 CALL ME", "Enter the number with its country code"),
    ("+44 12", "Enter the number with its country code"),
    ("07700 900123", "Enter the number with its country code"),
])
def test_phone_number_is_checked_before_twilio(typed, message, sms_client, twilio, twilio_app):
    response = request_code(sms_client, typed)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert twilio.requests == []
    assert login_code_rows(twilio_app) == []


# Through the console adapter (development) ------------------------------------


def test_console_adapter_logs_the_code_and_nowhere_else(app, client, logs):
    from app.extensions import redis

    assert request_code(client, "+44 7700 900 123").status_code == 302

    [sent] = [r for r in logs.records if r.name == "app.integrations.sms"]
    code = re.search(r"your Eventuall code is (\d{6})$", sent.getMessage()).group(1)
    assert PHONE in sent.getMessage()
    assert_code_not_stored(app, code)
    with app.app_context():
        assert code not in redis.client.get(f"sms-code:{PHONE}").decode()  # only its HMAC

    assert enter_code(client, code).status_code == 302
    assert_signed_in(client, PHONE)
    assert not [r for r in logs.records if r is not sent and code in r.getMessage()]
