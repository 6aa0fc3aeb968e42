"""Google sign-in end to end, against a real OpenID Connect provider on 127.0.0.1.

Our app runs under the Flask test client (the browser); the provider is a real
HTTP server, so discovery, the token exchange and the key fetch go over the wire.
"""
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import select

from app import create_app
from app.extensions import db
from app.models import AccountOwner, SignInEvent, User, UserProvider
from tests.conftest import app_config, dispose_app
from tests.fakes.oidc import OidcProvider, new_signing_key

CLIENT_ID = "eventuall-test"
CLIENT_SECRET = "fake-google-client-secret-0123456789abcdef"
CALLBACK = "http://localhost/auth/google/callback"
DID_NOT_COMPLETE = "Google sign-in did not complete. Please try again."
SIGNED_IN_USER = re.compile(r'data-testid="signed-in-user">\s*(?:<img[^>]*>)?\s*([^<]*?)\s*</a>')
ALICE = {"sub": "google-sub-alice", "email": "alice@example.com",
         "email_verified": True, "name": "Alice Google"}


@pytest.fixture
def provider():
    provider = OidcProvider(CLIENT_ID, CLIENT_SECRET, CALLBACK).start()
    yield provider
    provider.stop()


@pytest.fixture
def google_app(app, base_dir, smtp_server, provider):
    """A second app with Google configured, on the same database as `app`, which
    built the schema and empties it before each test."""
    google_app = create_app("testing", **app_config(
        base_dir, smtp_server.port, GOOGLE_CLIENT_ID=CLIENT_ID,
        GOOGLE_CLIENT_SECRET=CLIENT_SECRET, GOOGLE_DISCOVERY_URL=provider.discovery_url))
    yield google_app
    dispose_app(google_app)


@pytest.fixture
def browser(google_app):
    return google_app.test_client()


def ask_provider(browser, provider):
    """Click "Continue with Google" and let the provider answer: returns the
    callback URL it sends the browser back to."""
    start = browser.get("/auth/google")
    assert start.status_code == 302
    assert start.location.startswith(provider.url + "/authorize?")
    answer = requests.get(start.location, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    back = answer.headers["Location"]
    assert back.startswith(CALLBACK + "?")
    return back


def come_back(browser, callback_url):
    parts = urlsplit(callback_url)
    return browser.get(f"{parts.path}?{parts.query}")


def sign_in_with_google(browser, provider, identity):
    provider.next_identity = identity
    return come_back(browser, ask_provider(browser, provider))


def assert_signed_in_as(browser, response, name):
    assert response.status_code == 302
    assert response.location == "/dashboard"
    page = browser.get("/dashboard")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"Welcome, {name}." in html
    assert SIGNED_IN_USER.search(html).group(1) == name


def assert_refused(browser, response):
    """Back on the sign-in page with a clear message, and nobody signed in."""
    assert response.status_code == 302
    assert response.location == "/auth/login"
    page = browser.get("/auth/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert DID_NOT_COMPLETE in html
    assert 'data-testid="signed-in-user"' not in html
    assert browser.get("/dashboard").status_code == 302  # still asked to sign in


def all_rows(google_app, model):
    with google_app.app_context():
        rows = db.session.scalars(select(model)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def owned_accounts(google_app, user_id):
    with google_app.app_context():
        owners = db.session.scalars(select(AccountOwner).where(AccountOwner.user_id == user_id)).all()
        return [(owner.account_id, owner.account.is_personal) for owner in owners]


def test_first_google_sign_in_creates_user_personal_account_and_link(browser, google_app, provider):
    response = sign_in_with_google(browser, provider, ALICE)

    assert_signed_in_as(browser, response, "Alice Google")
    [user] = all_rows(google_app, User)
    assert (user.email, user.name) == ("alice@example.com", "Alice Google")
    assert owned_accounts(google_app, user.id) == [(user.current_account_id, True)]
    [link] = all_rows(google_app, UserProvider)
    assert (link.user_id, link.provider, link.subject, link.email) == (
        user.id, "google", "google-sub-alice", "alice@example.com")
    assert [e.method for e in all_rows(google_app, SignInEvent)] == ["google"]

    [authorize] = provider.seen("/authorize")
    assert authorize.args["client_id"] == CLIENT_ID
    assert authorize.args["redirect_uri"] == CALLBACK
    assert set(authorize.args["scope"].split()) == {"openid", "email", "profile"}
    assert authorize.args["nonce"] and authorize.args["state"]
    [token] = provider.seen("/token")
    assert token.client_auth in ("client_secret_basic", "client_secret_post")
    assert token.form["redirect_uri"] == CALLBACK


def test_second_sign_in_with_same_subject_reaches_same_user(google_app, provider):
    first = google_app.test_client()
    assert_signed_in_as(first, sign_in_with_google(first, provider, ALICE), "Alice Google")
    # The subject, not the address, identifies a Google account.
    second = google_app.test_client()
    moved = {**ALICE, "email": "alice.new@example.com"}
    assert_signed_in_as(second, sign_in_with_google(second, provider, moved), "Alice Google")

    [user] = all_rows(google_app, User)
    assert user.email == "alice@example.com"
    assert len(all_rows(google_app, UserProvider)) == 1
    assert len(owned_accounts(google_app, user.id)) == 1
    assert len(provider.seen("/token")) == 2


def test_verified_google_email_links_existing_user(browser, google_app, provider, make_user):
    user_id = make_user("alice@example.com", name="Alice Example")

    response = sign_in_with_google(browser, provider, ALICE)

    assert_signed_in_as(browser, response, "Alice Example")
    assert [u.id for u in all_rows(google_app, User)] == [user_id]
    [link] = all_rows(google_app, UserProvider)
    assert (link.user_id, link.subject) == (user_id, "google-sub-alice")
    assert len(owned_accounts(google_app, user_id)) == 1


def test_unverified_google_email_gets_a_separate_user(browser, google_app, provider, make_user):
    user_id = make_user("alice@example.com", name="Alice Example")

    response = sign_in_with_google(browser, provider, {**ALICE, "email_verified": False})

    assert_signed_in_as(browser, response, "Alice Google")
    users = {u.id: u for u in all_rows(google_app, User)}
    assert len(users) == 2
    [link] = all_rows(google_app, UserProvider)
    assert link.user_id != user_id and link.email is None
    assert users[link.user_id].email is None
    assert users[user_id].email == "alice@example.com"
    assert owned_accounts(google_app, link.user_id) == [(users[link.user_id].current_account_id, True)]


def test_user_saying_no_at_the_provider_lands_on_sign_in_page(browser, google_app, provider):
    provider.authorize_error = "access_denied"

    callback_url = ask_provider(browser, provider)

    assert parse_qs(urlsplit(callback_url).query)["error"] == ["access_denied"]
    assert_refused(browser, come_back(browser, callback_url))
    assert all_rows(google_app, User) == []
    assert provider.seen("/token") == []


def test_tampered_state_is_refused_before_the_code_is_spent(browser, google_app, provider):
    provider.next_identity = ALICE
    params = parse_qs(urlsplit(ask_provider(browser, provider)).query)

    forged = {"code": params["code"][0], "state": "not-the-state-we-sent"}
    response = browser.get("/auth/google/callback?" + urlencode(forged))

    assert_refused(browser, response)
    assert all_rows(google_app, User) == []
    assert provider.seen("/token") == []


@pytest.mark.parametrize("forgery", ["unpublished signing key", "another client's audience"])
def test_forged_id_token_is_refused(browser, google_app, provider, forgery):
    if forgery == "unpublished signing key":
        provider.signing_key = new_signing_key()
    else:
        provider.id_token_audience = "someone-elses-client-id"

    response = sign_in_with_google(browser, provider, ALICE)

    assert_refused(browser, response)
    assert all_rows(google_app, User) == []
    assert all_rows(google_app, UserProvider) == []
    assert len(provider.seen("/token")) == 1  # it did get a token, and refused it


def test_without_google_client_id_google_sign_in_is_absent(client):
    page = client.get("/auth/login")
    assert page.status_code == 200
    assert "Continue with Google" not in page.get_data(as_text=True)
    assert client.get("/auth/google").status_code == 404
    assert client.get("/auth/google/callback?code=x&state=y").status_code == 404


def test_unreachable_provider_is_a_message_not_a_500(app, base_dir, smtp_server):
    """Google down (nothing listening): both ends of the flow say so and sign nobody in."""
    from tests.fakes.smtp import free_port
    dead = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"
    offline = create_app("testing", **app_config(base_dir, smtp_server.port, GOOGLE_CLIENT_ID="eventuall-test",
                                                  GOOGLE_CLIENT_SECRET="s" * 40, GOOGLE_DISCOVERY_URL=dead))
    client = offline.test_client()
    response = client.get("/auth/google", follow_redirects=True)
    assert response.status_code == 200
    assert "Google sign-in is not answering right now" in response.get_data(as_text=True)
    response = client.get("/auth/google/callback?code=x&state=y", follow_redirects=True)
    assert response.status_code == 200
    assert client.get("/dashboard").status_code == 302
