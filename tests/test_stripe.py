"""Paying for tickets with Stripe Checkout, through the real stripe SDK against a fake
Stripe on 127.0.0.1, and the signed checkout.session webhooks."""
import json
import logging
import math
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app import create_app
from app.checkout.jobs import expire_due_holds_job, expiry_job_id
from app.checkout.services import WEBHOOK_GRACE
from app.extensions import db, redis
from app.models import AccessGrant, Hold, HoldStatus, Order, OrderStatus, PaymentMethod, Ticket, TicketType
from app.models.base import utcnow
from tests.conftest import app_config, post
from tests.fakes.stripe import FakeStripe, event, sign, signed_webhook
from tests.test_concurrency import race

SECRET_KEY = "sk_test_eventuall_0123456789abcdefghijklmnop"
WEBHOOK_SECRET = "whsec_eventuall_0123456789abcdefghijklmnopqrstuv"


@pytest.fixture(scope="session")
def fake_stripe():
    server = FakeStripe(SECRET_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stripe_app(app, base_dir, smtp_server, fake_stripe):
    """The app with Stripe configured; `app` first, so the schema exists."""
    return create_app("testing", **app_config(base_dir, smtp_server.port, STRIPE_SECRET_KEY=SECRET_KEY,
                                              STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                                              STRIPE_API_BASE=fake_stripe.url))


@pytest.fixture(autouse=True)
def fresh_stripe(fake_stripe):
    fake_stripe.reset()


@pytest.fixture
def buyer(stripe_app, sign_in, make_user):
    user_id = make_user("alice@example.com", name="Alice Example")
    return sign_in("alice@example.com", stripe_app.test_client()), user_id


@pytest.fixture
def paid_type(make_event, make_ticket_type):
    return make_ticket_type(make_event(name="Launch Night"), capacity=3, price_cents=2500, max_per_order=3)


def counters(ticket_type_id):
    db.session.expire_all()
    ticket_type = db.session.get(TicketType, ticket_type_id)
    return ticket_type.held, ticket_type.sold


def count(model):
    return db.session.scalar(select(func.count()).select_from(model))


def take(client, ticket_type_id, quantity):
    response = post(client, "/checkout/hold", {"ticket_type_id": ticket_type_id, "quantity": quantity},
                    token_from="/dashboard")
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.location.rsplit("/", 1)[-1]


def pay(client, hold_id, **kwargs):
    return post(client, f"/checkout/{hold_id}/pay", token_from=f"/checkout/{hold_id}", **kwargs)


def deliver(client, body, headers):
    return client.post("/webhooks/stripe", data=body, headers=headers)


def webhook(client, event_type, session, event_id=None, timestamp=None):
    return deliver(client, *signed_webhook(event(event_type, session, event_id), WEBHOOK_SECRET, timestamp))


def at_stripe(client, fake_stripe, ticket_type_id, quantity=2):
    """A buyer who held seats and went to Stripe's page: (hold id, session id)."""
    hold_id = take(client, ticket_type_id, quantity)
    response = pay(client, hold_id)
    assert response.status_code == 302, response.get_data(as_text=True)
    return hold_id, response.location.rsplit("/", 1)[-1]


def test_pay_opens_a_checkout_session_and_keeps_the_seats(buyer, paid_type, fake_stripe, ctx):
    client, user_id = buyer
    hold_id = take(client, paid_type, 2)
    page = client.get(f"/checkout/{hold_id}").get_data(as_text=True)
    assert "Pay with card" in page and "not set up" not in page

    response = pay(client, hold_id)
    assert response.status_code == 302
    [call] = fake_stripe.created()
    [session] = fake_stripe.sessions.values()
    assert response.location == session["url"]
    assert call.api_key == SECRET_KEY and call.idempotency_key == f"eventuall-checkout-{hold_id}"
    form = call.form
    assert form["mode"] == "payment" and form["customer_email"] == "alice@example.com"
    assert form["line_items"] == [{"quantity": "2", "price_data": {
        "currency": "eur", "unit_amount": "2500", "product_data": {"name": "Launch Night: General admission"}}}]
    assert form["metadata"] == {"hold_id": hold_id, "user_id": user_id, "idempotency_key": f"stripe-{hold_id}"}
    assert form["success_url"] == f"http://localhost/checkout/{hold_id}/paid"
    assert form["cancel_url"] == f"http://localhost/checkout/{hold_id}"
    assert session["amount_total"] == 5000

    # The hold now outlasts the payment page, and its expiry job moved with it.
    hold = db.session.get(Hold, hold_id)
    assert hold.status == HoldStatus.ACTIVE
    assert hold.expires_at.timestamp() == session["expires_at"] + WEBHOOK_GRACE.total_seconds()
    assert hold.expires_at - utcnow() > timedelta(minutes=30)
    assert redis.zscore("rq:scheduled:default", expiry_job_id(hold.expires_at)) == \
        math.ceil(hold.expires_at.timestamp())
    assert counters(paid_type) == (2, 0)
    assert "Pay with card" in client.get(f"/checkout/{hold_id}").get_data(as_text=True)  # back from Stripe

    # A second click (or a retry) goes to the same payment page: one session per hold.
    again = pay(client, hold_id, headers={"HX-Request": "true"})
    assert again.status_code == 204 and again.headers["HX-Redirect"] == session["url"]
    assert len(fake_stripe.created()) == 2 and len(fake_stripe.sessions) == 1


def test_completed_webhook_makes_one_paid_order(buyer, paid_type, fake_stripe, outbox, run_jobs, ctx):
    client, user_id = buyer
    hold_id, session_id = at_stripe(client, fake_stripe, paid_type)
    session = fake_stripe.complete(session_id)
    delivery = signed_webhook(event("checkout.session.completed", session), WEBHOOK_SECRET)

    response = deliver(client.application.test_client(), *delivery)  # Stripe has no session cookie
    assert response.status_code == 200 and response.json == {"received": True}
    order = db.session.scalar(select(Order))
    assert order.status == OrderStatus.PAID and order.payment_method == PaymentMethod.STRIPE
    assert order.stripe_session_id == session_id and order.user_id == user_id and order.total_cents == 5000
    assert order.paid_at is not None and order.items[0].hold_id == hold_id
    assert count(Ticket) == 2
    grant = db.session.scalar(select(AccessGrant).where(AccessGrant.user_id == user_id))
    assert grant.role_id == "attendee" and grant.source_ref == order.id
    assert db.session.get(Hold, hold_id).status == HoldStatus.CONFIRMED
    assert counters(paid_type) == (0, 2)

    # Stripe delivers at least once: the same event again, and another event for the same session.
    assert deliver(client, *delivery).status_code == 200
    assert webhook(client, "checkout.session.completed", session).status_code == 200
    assert webhook(client, "checkout.session.async_payment_succeeded", session).status_code == 200
    assert count(Order) == 1 and count(Ticket) == 2 and count(AccessGrant) == 1
    assert counters(paid_type) == (0, 2)

    run_jobs()
    mails = outbox.to("alice@example.com")
    assert [m["Subject"] for m in mails].count(f"Your tickets for Launch Night ({order.number})") == 1

    # The buyer, back from Stripe, lands on the order.
    response = client.get(f"/checkout/{hold_id}/paid")
    assert response.status_code == 302 and response.location.endswith(f"/orders/{order.id}")


def test_return_page_waits_for_the_webhook(buyer, paid_type, fake_stripe, ctx):
    client, _ = buyer
    hold_id, session_id = at_stripe(client, fake_stripe, paid_type)
    page = client.get(f"/checkout/{hold_id}/paid")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in body
    assert 'id="payment-status"' in body and 'hx-trigger="every 2s"' in body
    poll = client.get(f"/checkout/{hold_id}/paid", headers={"HX-Request": "true"})
    fragment = poll.get_data(as_text=True)
    assert 'id="payment-status"' in fragment and "<html" not in fragment and "HX-Request" in poll.headers["Vary"]

    webhook(client, "checkout.session.completed", fake_stripe.complete(session_id))
    poll = client.get(f"/checkout/{hold_id}/paid", headers={"HX-Request": "true"})
    order_id = db.session.scalar(select(Order.id))
    assert poll.status_code == 204 and poll.headers["HX-Redirect"].endswith(f"/orders/{order_id}")


def test_simultaneous_deliveries_make_one_order(buyer, paid_type, fake_stripe, stripe_app, outbox, run_jobs, ctx):
    client, _ = buyer
    _, session_id = at_stripe(client, fake_stripe, paid_type)
    session = fake_stripe.complete(session_id)
    deliveries = [signed_webhook(event("checkout.session.completed", session), WEBHOOK_SECRET) for _ in range(6)]
    clients = [stripe_app.test_client() for _ in deliveries]
    statuses = race([lambda c=c, d=d: deliver(c, *d).status_code for c, d in zip(clients, deliveries)])
    assert statuses == [200] * len(deliveries)
    assert count(Order) == 1 and count(Ticket) == 2
    assert counters(paid_type) == (0, 2)
    run_jobs()
    assert sum("Your tickets" in m["Subject"] for m in outbox.to("alice@example.com")) == 1


def _tampered(payload, headers):
    return payload.replace(b'"amount_total": 5000', b'"amount_total": 1'), headers


def _forged(payload, headers):
    return payload, {"Stripe-Signature": sign(payload, "whsec_not_ours_0123456789abcdef0123456789")}


def _stale(payload, headers):
    return payload, {"Stripe-Signature": sign(payload, WEBHOOK_SECRET, int(time.time()) - 301)}


def _unsigned(payload, headers):
    return payload, {}


def _garbled_header(payload, headers):
    return payload, {"Stripe-Signature": "v1=deadbeef"}


def _not_json(payload, headers):
    body = b"{not json"
    return body, {"Stripe-Signature": sign(body, WEBHOOK_SECRET)}


def _no_data(payload, headers):
    body = json.dumps({"id": "evt_1", "object": "event", "type": "checkout.session.completed"}).encode()
    return body, {"Stripe-Signature": sign(body, WEBHOOK_SECRET)}


@pytest.mark.parametrize("spoil, message", [
    (_forged, "Invalid or expired Stripe signature."),
    (_tampered, "Invalid or expired Stripe signature."),
    (_stale, "Invalid or expired Stripe signature."),
    (_garbled_header, "Invalid or expired Stripe signature."),
    (_unsigned, "Missing Stripe-Signature header."),
    (_not_json, "Malformed Stripe event."),
    (_no_data, "Malformed Stripe event."),
])
def test_bad_webhooks_are_refused_and_write_nothing(buyer, paid_type, fake_stripe, spoil, message, ctx):
    client, _ = buyer
    hold_id, session_id = at_stripe(client, fake_stripe, paid_type)
    delivery = signed_webhook(event("checkout.session.completed", fake_stripe.complete(session_id)),
                              WEBHOOK_SECRET)
    response = deliver(client, *spoil(*delivery))
    assert response.status_code == 400 and response.json == {"error": message}
    assert count(Order) == 0 and count(Ticket) == 0 and count(AccessGrant) == 0
    assert db.session.get(Hold, hold_id).status == HoldStatus.ACTIVE
    assert counters(paid_type) == (2, 0)


def test_expired_session_releases_the_hold(buyer, paid_type, fake_stripe, ctx):
    client, _ = buyer
    hold_id, session_id = at_stripe(client, fake_stripe, paid_type)
    session = fake_stripe.expire(session_id)
    assert webhook(client, "checkout.session.expired", session).status_code == 200
    assert db.session.get(Hold, hold_id).status == HoldStatus.EXPIRED
    assert counters(paid_type) == (0, 0)
    assert webhook(client, "checkout.session.expired", session).status_code == 200  # replay: once only
    assert counters(paid_type) == (0, 0)
    assert pay(client, hold_id).status_code == 410


def _expire(hold_id, app):
    db.session.execute(update(Hold).where(Hold.id == hold_id).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    with app.app_context():
        assert expire_due_holds_job() == 1


def test_payment_after_the_hold_ended_takes_seats_that_are_still_free(buyer, paid_type, fake_stripe,
                                                                      stripe_app, ctx):
    client, _ = buyer
    hold_id, session_id = at_stripe(client, fake_stripe, paid_type)
    _expire(hold_id, stripe_app)
    assert counters(paid_type) == (0, 0)
    assert webhook(client, "checkout.session.completed", fake_stripe.complete(session_id)).status_code == 200
    order = db.session.scalar(select(Order))
    assert order.status == OrderStatus.PAID and len(order.tickets) == 2 and count(AccessGrant) == 1
    assert db.session.get(Hold, hold_id).status == HoldStatus.CONFIRMED
    assert counters(paid_type) == (0, 2)


@pytest.mark.parametrize("capacity", [3, 10])  # room for one buyer's seats, or for them twice
def test_simultaneous_late_deliveries_make_one_order(buyer, make_event, make_ticket_type, fake_stripe, stripe_app,
                                                     capacity, ctx):
    client, _ = buyer
    ticket_type_id = make_ticket_type(make_event(), capacity=capacity, price_cents=2500)
    hold_id, session_id = at_stripe(client, fake_stripe, ticket_type_id)
    _expire(hold_id, stripe_app)
    session = fake_stripe.complete(session_id)
    deliveries = [signed_webhook(event("checkout.session.completed", session), WEBHOOK_SECRET) for _ in range(6)]
    clients = [stripe_app.test_client() for _ in deliveries]
    statuses = race([lambda c=c, d=d: deliver(c, *d).status_code for c, d in zip(clients, deliveries)])
    # 409 asks Stripe to retry a delivery that met its twin mid-way; the retry finds the order.
    assert set(statuses) <= {200, 409} and 200 in statuses, statuses
    assert [o.status for o in db.session.scalars(select(Order))] == [OrderStatus.PAID]
    assert counters(ticket_type_id) == (0, 2)
    for client_, delivery in zip(clients, deliveries):
        assert deliver(client_, *delivery).status_code == 200  # Stripe's retries
    assert count(Order) == 1 and count(Ticket) == 2


def test_payment_after_the_seats_were_sold_is_recorded_for_a_refund(buyer, paid_type, fake_stripe, stripe_app,
                                                                    sign_in, make_user, caplog, ctx):
    client, _ = buyer
    hold_id, session_id = at_stripe(client, fake_stripe, paid_type)
    _expire(hold_id, stripe_app)
    make_user("bob@example.com")
    take(sign_in("bob@example.com", stripe_app.test_client()), paid_type, 3)  # the last seats go to Bob
    session = fake_stripe.complete(session_id)
    with caplog.at_level(logging.WARNING, logger="app.checkout.services"):
        assert webhook(client, "checkout.session.completed", session).status_code == 200  # Stripe stops retrying
        assert webhook(client, "checkout.session.completed", session).status_code == 200
    order = db.session.scalar(select(Order))
    assert order.status == OrderStatus.CANCELLED and order.stripe_session_id == session_id
    assert order.total_cents == 5000 and order.currency == "EUR" and order.paid_at is not None
    assert count(Order) == 1 and count(Ticket) == 0 and count(AccessGrant) == 0
    assert counters(paid_type) == (3, 0)  # Bob's hold, untouched
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert session_id in warning.getMessage() and "refund" in warning.getMessage()
    assert order.number in warning.getMessage()
    assert SECRET_KEY not in caplog.text and WEBHOOK_SECRET not in caplog.text


def test_other_events_and_foreign_sessions_are_acknowledged_and_ignored(buyer, paid_type, fake_stripe, ctx):
    client, _ = buyer
    hold_id, session_id = at_stripe(client, fake_stripe, paid_type)
    response = webhook(client, "payment_intent.created", {"id": "pi_1", "object": "payment_intent"})
    assert response.status_code == 200 and response.json["ignored"] == "payment_intent.created"
    foreign = {"id": "cs_test_other", "object": "checkout.session", "payment_status": "paid", "metadata": {}}
    assert webhook(client, "checkout.session.completed", foreign).status_code == 200
    unpaid = {**fake_stripe.sessions[session_id], "status": "complete"}  # a bank debit still on its way
    assert webhook(client, "checkout.session.completed", unpaid).status_code == 200
    assert count(Order) == 0 and db.session.get(Hold, hold_id).status == HoldStatus.ACTIVE


def test_free_tickets_never_go_to_stripe(buyer, make_event, make_ticket_type, fake_stripe, ctx):
    client, _ = buyer
    hold_id = take(client, make_ticket_type(make_event()), 1)
    assert "Pay with card" not in client.get(f"/checkout/{hold_id}").get_data(as_text=True)
    response = pay(client, hold_id)
    assert response.status_code == 422 and "nothing to pay" in response.get_data(as_text=True)
    assert fake_stripe.requests == []


def test_someone_elses_or_an_ended_hold_is_refused_before_stripe(buyer, paid_type, fake_stripe, stripe_app,
                                                                  sign_in, make_user, ctx):
    client, _ = buyer
    hold_id = take(client, paid_type, 1)
    make_user("mallory@example.com")
    mallory = sign_in("mallory@example.com", stripe_app.test_client())
    assert post(mallory, f"/checkout/{hold_id}/pay", token_from="/dashboard").status_code == 404
    _expire(hold_id, stripe_app)
    response = pay(client, hold_id)
    assert response.status_code == 410 and "expired" in response.get_data(as_text=True)
    assert fake_stripe.requests == []


def test_stripe_refusing_us_is_a_clear_error_and_keeps_the_hold_as_it_was(buyer, paid_type, fake_stripe,
                                                                         monkeypatch, caplog, ctx):
    client, _ = buyer
    hold_id = take(client, paid_type, 1)
    expires_at = db.session.get(Hold, hold_id).expires_at
    monkeypatch.setattr(fake_stripe, "secret_key", "sk_test_rotated_0123456789")
    response = pay(client, hold_id, headers={"HX-Request": "true"})
    assert response.status_code == 502 and "try again" in response.get_data(as_text=True)
    assert fake_stripe.created()[0].api_key == SECRET_KEY
    db.session.expire_all()
    assert db.session.get(Hold, hold_id).expires_at == expires_at
    assert SECRET_KEY not in caplog.text and SECRET_KEY[-4:] not in caplog.text


def test_without_stripe_there_is_no_card_payment(user_client, paid_type, ctx):
    client, _ = user_client
    hold_id = take(client, paid_type, 1)
    page = client.get(f"/checkout/{hold_id}").get_data(as_text=True)
    assert "Pay with card" not in page and "Online payment is not set up" in page
    assert pay(client, hold_id).status_code == 404
    body, headers = signed_webhook(event("checkout.session.completed", {"id": "cs_test_1"}), WEBHOOK_SECRET)
    assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 404
    assert count(Order) == 0


def test_stripe_needs_its_webhook_secret(app, base_dir, smtp_server):
    with pytest.raises(RuntimeError, match="STRIPE_WEBHOOK_SECRET"):
        create_app("testing", **app_config(base_dir, smtp_server.port, STRIPE_SECRET_KEY=SECRET_KEY))
