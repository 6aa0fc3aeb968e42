"""Invitations end to end: the organiser invites, the link goes out by e-mail or text,
the person opens it, signs in and accepts; and every way a link can be refused."""
import json
import logging
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app import create_app
from app.extensions import db, redis
from app.integrations import sms
from app.jobs.worker import AppWorker
from app.models import AccessGrant, Invitation, PendingProfile, User
from app.models.base import utcnow
from tests.conftest import app_config as config_for  # aliased: pytest would collect test_*
from tests.conftest import csrf_token, dispose_app, post
from tests.test_concurrency import race
from tests.test_manage_team import htmx_post, make_event, organiser  # noqa: F401  (fixtures)

LINK_RE = re.compile(r"http://localhost(/invitations/[\w-]+)")
PHONE = "+447700900123"


@pytest.fixture
def logs(caplog):
    """caplog at INFO (alembic's logging config leaves the root at WARN)."""
    caplog.set_level(logging.INFO)
    return caplog


def invite(client, event_id, contact, role="host"):
    response = post(client, f"/manage/events/{event_id}/invitations", {"contact": contact, "role": role},
                    token_from="/dashboard")
    assert response.status_code == 302, response.get_data(as_text=True)
    return db.session.scalar(select(Invitation).order_by(Invitation.created_at.desc()).limit(1))


def mailed_link(outbox, run_jobs, address):
    run_jobs()
    return LINK_RE.search(outbox.to(address)[-1].get_body(("plain",)).get_content()).group(1)


def accept(client, link):
    return post(client, link, token_from=link)


def test_invitation_by_email_end_to_end(organiser, app, sign_in, outbox, run_jobs, logs, ctx):
    client, alice, event_id = organiser
    invitation = invite(client, event_id, "New@Example.com", role="host")

    # Before anyone signs in: a pending profile holds the grant.
    profile_id = db.session.scalar(select(PendingProfile.id).where(PendingProfile.email == "new@example.com"))
    grant = db.session.get(AccessGrant, invitation.grant_id)
    assert (grant.pending_profile_id, grant.user_id, grant.role_id) == (profile_id, None, "host")
    assert (grant.source, grant.source_ref, grant.granted_by_id) == ("invitation", invitation.id, alice)

    run_jobs()
    [mail] = outbox.to("new@example.com")
    assert mail["Subject"] == "You're invited to Night Live"
    text = mail.get_body(("plain",)).get_content()
    assert "Alice Example invites you to Night Live on Eventuall, as Host." in text
    link = LINK_RE.search(text).group(1)
    token = link.rsplit("/", 1)[1]
    # Only the message carries the token: not the database, not the log.
    assert token not in str(db.session.execute(select(Invitation.__table__)).all())
    assert token not in logs.text

    guest = app.test_client()
    page = guest.get(link).get_data(as_text=True)
    assert "Night Live" in page and "<strong>Host</strong>" in page and "Sign in to accept" in page

    sign_in("new@example.com", guest)
    new_user = db.session.scalar(select(User.id).where(User.email == "new@example.com"))
    db.session.expire_all()
    assert grant.user_id == new_user and grant.pending_profile_id is None
    assert db.session.get(PendingProfile, profile_id) is None
    dashboard = guest.get("/dashboard").get_data(as_text=True)
    assert "Night Live" in dashboard and 'data-testid="my-role">Host<' in dashboard

    assert "Accept invitation" in guest.get(link).get_data(as_text=True)
    response = accept(guest, link)
    assert response.status_code == 302 and response.location.endswith(f"/events/{event_id}")
    db.session.expire_all()
    assert invitation.accepted_at is not None and invitation.accepted_by_id == new_user
    assert invitation.status(utcnow()) == "accepted"

    again = guest.get(link)
    assert again.status_code == 409 and "already been used" in again.get_data(as_text=True)
    assert 'data-testid="invitation-status">accepted<' in client.get(
        f"/manage/events/{event_id}/team").get_data(as_text=True)


def test_expired_revoked_reused_and_garbage_links_are_refused(organiser, app, sign_in, outbox, run_jobs, ctx):
    client, _, event_id = organiser
    guest = sign_in("guest@example.com", app.test_client())
    links = {}
    for name in ("expired", "revoked", "reused"):
        invitation = invite(client, event_id, f"{name}@example.com")
        links[name] = (invitation, mailed_link(outbox, run_jobs, f"{name}@example.com"))

    expired = links["expired"][0]
    expired.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    htmx_post(client, f"/manage/events/{event_id}/invitations/{links['revoked'][0].id}/revoke")
    assert accept(guest, links["reused"][1]).status_code == 302

    for name, status, message in [("expired", 410, "This invitation has expired. Ask the organiser for a new one."),
                                  ("revoked", 410, "This invitation was withdrawn by the organiser."),
                                  ("reused", 409, "This invitation has already been used.")]:
        link = links[name][1]
        page = guest.get(link)
        assert page.status_code == status and message in page.get_data(as_text=True), name
        assert "Accept invitation" not in page.get_data(as_text=True)
        response = post(guest, link, token_from="/dashboard")
        assert response.status_code == status and message in response.get_data(as_text=True), name
    db.session.expire_all()
    assert links["expired"][0].accepted_at is None and links["revoked"][0].accepted_at is None

    for garbage in ("/invitations/not-a-token", links["reused"][1] + "x"):
        assert guest.get(garbage).status_code == 404
        assert post(guest, garbage, token_from="/dashboard").status_code == 404
        assert "This invitation link is not valid" in guest.get(garbage).get_data(as_text=True)


def test_an_invitation_to_an_existing_user_cannot_be_taken_by_someone_else(
        organiser, app, make_user, sign_in, outbox, run_jobs, ctx):
    client, _, event_id = organiser
    bob = make_user("bob@example.com")
    invitation = invite(client, event_id, "bob@example.com", role="talent")
    assert db.session.get(AccessGrant, invitation.grant_id).user_id == bob  # no pending profile
    link = mailed_link(outbox, run_jobs, "bob@example.com")

    carol = sign_in("carol@example.com", app.test_client())
    refused = accept(carol, link)
    assert refused.status_code == 403
    assert "This invitation was sent to someone else." in refused.get_data(as_text=True)
    db.session.expire_all()
    assert invitation.accepted_at is None

    assert accept(sign_in("bob@example.com", app.test_client()), link).status_code == 302


def test_a_link_for_someone_without_an_account_moves_only_its_own_grant(
        organiser, app, sign_in, outbox, run_jobs, ctx):
    """Whoever holds the link may accept it with another account, but the link is not
    a claim on what else waits for that address (here, an imported order's grant)."""
    client, _, event_id = organiser
    invitation = invite(client, event_id, "work@example.com", role="host")
    profile_id = db.session.get(AccessGrant, invitation.grant_id).pending_profile_id
    db.session.add(AccessGrant(event_id=event_id, role_id="attendee", pending_profile_id=profile_id, source="order"))
    db.session.commit()

    home = sign_in("home@example.com", app.test_client())
    assert accept(home, mailed_link(outbox, run_jobs, "work@example.com")).status_code == 302
    home_id = db.session.scalar(select(User.id).where(User.email == "home@example.com"))
    holders = dict(db.session.execute(select(AccessGrant.role_id, AccessGrant.user_id)
                                      .where(AccessGrant.event_id == event_id)).all())
    assert holders == {"host": home_id, "attendee": None}

    sign_in("work@example.com", app.test_client())
    work_id = db.session.scalar(select(User.id).where(User.email == "work@example.com"))
    db.session.expire_all()
    assert db.session.scalar(select(AccessGrant.user_id).where(AccessGrant.role_id == "attendee")) == work_id


def test_revoking_the_access_of_an_unused_invitation_withdraws_its_link(
        organiser, app, sign_in, outbox, run_jobs, ctx):
    client, _, event_id = organiser
    invitation = invite(client, event_id, "new@example.com")
    link = mailed_link(outbox, run_jobs, "new@example.com")
    response = htmx_post(client, f"/manage/events/{event_id}/participants/{invitation.grant_id}/revoke")
    assert response.status_code == 200

    guest = sign_in("new@example.com", app.test_client())
    refused = accept(guest, link)
    assert refused.status_code == 410 and "withdrawn" in refused.get_data(as_text=True)
    assert db.session.scalar(select(AccessGrant).where(AccessGrant.event_id == event_id)) is None


@pytest.mark.concurrency
def test_two_simultaneous_accepts_of_one_link_accept_once(organiser, app, sign_in, outbox, run_jobs, ctx):
    client, _, event_id = organiser
    guests = [sign_in(email, app.test_client()) for email in ("carol@example.com", "dave@example.com")]
    for round_ in range(5):
        address = f"round{round_}@example.com"
        invitation = invite(client, event_id, address, role="talent")
        link = mailed_link(outbox, run_jobs, address)
        tokens = [csrf_token(guest, link) for guest in guests]
        statuses = race([lambda g=g, t=t: g.post(link, data={"csrf_token": t}).status_code
                         for g, t in zip(guests, tokens)])
        assert sorted(statuses) == [302, 409], f"round {round_}: {statuses}"
        db.session.expire_all()
        grant = db.session.get(AccessGrant, invitation.grant_id)
        assert grant.user_id == invitation.accepted_by_id and grant.pending_profile_id is None
        assert db.session.scalar(select(AccessGrant.id).where(
            AccessGrant.source_ref == invitation.id, AccessGrant.id != grant.id)) is None


# --- by text message ------------------------------------------------------------------

def test_invitation_by_phone_goes_out_through_the_console_adapter(organiser, app, logs, run_jobs, ctx):
    client, _, event_id = organiser
    invitation = invite(client, event_id, "+44 7700 900 123", role="talent")
    assert (invitation.email, invitation.phone) == (None, PHONE)
    assert db.session.scalar(select(PendingProfile.phone)) == PHONE
    run_jobs()
    [line] = [r.getMessage() for r in logs.records if r.getMessage().startswith("SMS (console adapter)")]
    assert line.startswith(f"SMS (console adapter) to {PHONE}: Alice Example invites you to Night Live "
                           "on Eventuall as Talent: http://localhost/invitations/")
    link = LINK_RE.search(line).group(1)

    # The person signs in with that number (its code, too, is in the console log).
    guest = app.test_client()
    assert "<strong>Talent</strong>" in guest.get(link).get_data(as_text=True)
    assert post(guest, "/auth/login/sms", {"phone": PHONE}).status_code == 302
    code = re.search(r"your Eventuall code is (\d{6})", logs.text).group(1)
    assert post(guest, "/auth/verify", {"code": code}, token_from="/auth/verify").status_code == 302
    assert accept(guest, link).status_code == 302
    user_id = db.session.scalar(select(User.id).where(User.phone == PHONE))
    db.session.expire_all()
    assert db.session.get(AccessGrant, invitation.grant_id).user_id == user_id
    assert invitation.accepted_by_id == user_id


ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f00dfeed" * 4
SENDER = "+15005550006"


class FakeTwilioMessages:
    """Twilio's Messages API (POST /2010-04-01/Accounts/{Sid}/Messages.json) on 127.0.0.1."""

    def __init__(self):
        self.sent, self.invalid_numbers = [], set()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._thread.join()

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        auth = request.authorization
        if not auth or (auth.username, auth.password) != (ACCOUNT_SID, AUTH_TOKEN):
            response = self._error(401, 20003, "Authenticate")
        elif request.path != f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json" or request.method != "POST":
            response = self._error(404, 20404, "Not found")
        elif request.form["To"] in self.invalid_numbers:
            response = self._error(400, 21211, f"The 'To' number {request.form['To']} is not valid.")
        else:
            self.sent.append(request.form.to_dict())
            response = Response(json.dumps({
                "sid": "SM" + "0" * 32, "account_sid": ACCOUNT_SID, "to": request.form["To"],
                "from": request.form["From"], "body": request.form["Body"], "status": "queued",
                "direction": "outbound-api", "num_segments": "1", "api_version": "2010-04-01"}),
                201, mimetype="application/json")
        return response(environ, start_response)

    @staticmethod
    def _error(status, code, message):
        return Response(json.dumps({"code": code, "message": message, "status": status}), status,
                        mimetype="application/json")


@pytest.fixture
def twilio_messages():
    with FakeTwilioMessages() as server:
        yield server


@pytest.fixture
def texting_app(app, base_dir, smtp_server, twilio_messages):
    """The app with Twilio Messages configured (sign-in codes stay on the console)."""
    texting_app = create_app("testing", **config_for(
        base_dir, smtp_server.port, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_SMS_FROM=SENDER, TWILIO_API_BASE_URL=twilio_messages.base_url))
    yield texting_app
    dispose_app(texting_app)


def test_invitation_by_phone_through_twilio_messages(
        texting_app, twilio_messages, owner_client, make_event, sign_in, logs, ctx):
    _, _, account_id = owner_client
    event_id = make_event(account_id)
    organiser_client = sign_in("alice@example.com", texting_app.test_client())
    invite(organiser_client, event_id, PHONE, role="talent")
    with texting_app.app_context():  # the worker runs jobs in the app it serves
        AppWorker([redis.queue()], connection=redis.client).work(burst=True)

    [message] = twilio_messages.sent
    assert (message["To"], message["From"]) == (PHONE, SENDER)
    assert message["Body"].startswith("Alice Example invites you to Night Live on Eventuall as Talent: ")
    link = LINK_RE.search(message["Body"]).group(1)
    assert texting_app.test_client().get(link).status_code == 200
    assert link not in logs.text  # only the console adapter logs bodies


def test_twilio_messages_refusals_keep_the_body_out_of_the_log(texting_app, twilio_messages, logs):
    twilio_messages.invalid_numbers.add("+15005550001")
    with texting_app.app_context():
        with pytest.raises(sms.NumberRejected):
            sms.send_text("+15005550001", "secret link http://localhost/invitations/abc")
        texting_app.extensions["sms_texter"].client.api.base_url = "http://127.0.0.1:9"  # nothing listens
        with pytest.raises(sms.SmsUnavailable):
            sms.send_text(PHONE, "secret link http://localhost/invitations/abc")
    assert "secret link" not in logs.text
    assert "Twilio Messages will not text +15005550001: HTTP 400, error 21211" in logs.text
