"""Buying tickets over HTTP: holds, confirmation, bad input, expiry."""
import math
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.checkout.jobs import expire_due_holds_job, expiry_job_id, sweep_expired_holds
from app.extensions import db, redis
from app.models import (AccessGrant, Hold, HoldStatus, Order, OrderStatus, Ticket, TicketType,
                        WaitlistEntry)
from app.models.base import utcnow
from tests.conftest import csrf_token, post


@pytest.fixture
def free_event(make_event, make_ticket_type):
    event_id = make_event()
    return event_id, make_ticket_type(event_id, capacity=5, max_per_order=4)


def counters(ticket_type_id):
    db.session.expire_all()
    ticket_type = db.session.get(TicketType, ticket_type_id)
    return ticket_type.held, ticket_type.sold


def take(client, ticket_type_id, quantity, page="/dashboard", **kwargs):
    return post(client, "/checkout/hold", {"ticket_type_id": ticket_type_id, "quantity": quantity},
                token_from=page, **kwargs)


HTMX = {"HX-Request": "true"}  # what the event page's buy form sends with JavaScript


def confirm(client, hold_id, method="free", key="key-1"):
    return post(client, f"/checkout/{hold_id}/confirm", {"payment_method": method, "idempotency_key": key},
                token_from="/dashboard")


def test_event_page_shows_tickets_with_availability(client, free_event):
    event_id, _ = free_event
    page = client.get(f"/events/{event_id}").get_data(as_text=True)
    assert "General admission" in page and "5 left" in page and "Get tickets" in page


def test_availability_refresh_is_out_of_band(client, free_event):
    event_id, ticket_type_id = free_event
    body = client.get(f"/events/{event_id}/availability", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert f'id="availability-{ticket_type_id}"' in body and 'hx-swap-oob="true"' in body and "<html" not in body


def test_take_a_free_ticket(user_client, free_event, outbox, run_jobs, ctx):
    client, user_id = user_client
    event_id, ticket_type_id = free_event
    response = take(client, ticket_type_id, 2)
    assert response.status_code == 302
    hold = db.session.scalar(select(Hold))
    assert hold.quantity == 2 and hold.status == HoldStatus.ACTIVE
    assert counters(ticket_type_id) == (2, 0)
    page = client.get(response.location).get_data(as_text=True)
    assert "held for" in page and "data-countdown" in page
    # the expiry job is scheduled at the hold's expiry (one job for every hold of that second)
    assert redis.zscore("rq:scheduled:default", expiry_job_id(hold.expires_at)) == \
        math.ceil(hold.expires_at.timestamp())

    response = confirm(client, hold.id)
    assert response.status_code == 302
    order = db.session.scalar(select(Order))
    assert order.status == OrderStatus.PAID and order.user_id == user_id
    assert len(order.tickets) == 2 and len({t.code for t in order.tickets}) == 2
    assert all(len(t.code) >= 24 for t in order.tickets)
    assert counters(ticket_type_id) == (0, 2)
    grant = db.session.scalar(select(AccessGrant).where(AccessGrant.user_id == user_id))
    assert grant.role_id == "attendee" and grant.source == "ticket" and grant.source_ref == order.id
    page = client.get(response.location).get_data(as_text=True)
    assert order.number in page and page.count('data-testid="ticket"') == 2
    run_jobs()
    assert order.number in outbox.to("alice@example.com")[-1]["Subject"]


def test_double_submitted_confirm_makes_one_order(user_client, free_event, ctx):
    client, _ = user_client
    _, ticket_type_id = free_event
    take(client, ticket_type_id, 1)
    hold_id = db.session.scalar(select(Hold.id))
    first, second = confirm(client, hold_id, key="same"), confirm(client, hold_id, key="same")
    assert first.status_code == second.status_code == 302 and first.location == second.location
    assert db.session.scalar(select(func.count()).select_from(Order)) == 1
    assert counters(ticket_type_id) == (0, 1)


def test_confirm_with_another_key_after_success_is_refused(user_client, free_event, ctx):
    client, _ = user_client
    _, ticket_type_id = free_event
    take(client, ticket_type_id, 1)
    hold_id = db.session.scalar(select(Hold.id))
    confirm(client, hold_id, key="a")
    response = confirm(client, hold_id, key="b")
    assert response.status_code == 410
    assert db.session.scalar(select(func.count()).select_from(Order)) == 1


def test_upgrade_ticket_grants_the_backstage_queue(user_client, make_event, make_ticket_type, ctx):
    client, user_id = user_client
    event_id = make_event()
    ticket_type_id = make_ticket_type(event_id, is_upgrade=True, name="Meet & greet")
    take(client, ticket_type_id, 1)
    confirm(client, db.session.scalar(select(Hold.id)))
    assert db.session.scalar(select(AccessGrant.role_id).where(AccessGrant.user_id == user_id)) == "vip"


@pytest.mark.parametrize("quantity, status, message", [
    ("0", 422, "Choose at least one ticket."),
    ("-2", 422, "Choose at least one ticket."),
    ("5", 422, "at most 4 of these per order"),
    ("lots", 422, "Choose how many tickets you want."),
    ("", 422, "Choose how many tickets you want."),
])
def test_bad_quantities_are_refused_and_write_nothing(user_client, free_event, quantity, status, message, ctx):
    client, _ = user_client
    _, ticket_type_id = free_event
    response = take(client, ticket_type_id, quantity)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Hold)) == 0
    assert counters(ticket_type_id) == (0, 0)


def test_more_than_remaining_is_refused_with_what_is_left(user_client, make_event, make_ticket_type, app,
                                                          sign_in, make_user, ctx):
    client, _ = user_client
    ticket_type_id = make_ticket_type(make_event(), capacity=3)
    make_user("bob@example.com")
    bob = sign_in("bob@example.com", app.test_client())
    assert take(bob, ticket_type_id, 2).status_code == 302
    response = take(client, ticket_type_id, 2)
    assert response.status_code == 409 and "Only 1 left" in response.get_data(as_text=True)
    assert take(client, ticket_type_id, 1).status_code == 302
    assert "Sold out" in take(make_user("carol@example.com") and sign_in(
        "carol@example.com", app.test_client()), ticket_type_id, 1).get_data(as_text=True)
    # Bob asks for 3 instead of his 2: refused, and his 2 stay held (nothing half-written)
    response = take(bob, ticket_type_id, 3)
    assert response.status_code == 409 and "Only 2 left" in response.get_data(as_text=True)
    assert counters(ticket_type_id) == (3, 0)
    assert db.session.scalar(select(func.count()).select_from(Hold).where(Hold.status == "active")) == 2


def test_the_buy_form_posts_with_htmx_and_a_taken_hold_goes_to_checkout(user_client, free_event, ctx):
    client, _ = user_client
    event_id, ticket_type_id = free_event
    page = client.get(f"/events/{event_id}").get_data(as_text=True)
    assert 'hx-post="/checkout/hold"' in page and f'hx-target="#hold-result-{ticket_type_id}"' in page
    assert f'id="hold-result-{ticket_type_id}"' in page
    response = take(client, ticket_type_id, 2, headers=HTMX)
    hold = db.session.scalar(select(Hold))
    assert response.status_code == 204 and response.headers["HX-Redirect"] == f"/checkout/{hold.id}"
    assert hold.quantity == 2 and counters(ticket_type_id) == (2, 0)


def test_a_sold_out_refusal_is_said_beside_the_form_with_the_waitlist(user_client, make_event, make_ticket_type,
                                                                       app, sign_in, make_user, ctx):
    client, _ = user_client
    event_id = make_event()
    ticket_type_id = make_ticket_type(event_id, capacity=2)
    make_user("bob@example.com")
    bob = sign_in("bob@example.com", app.test_client())
    assert take(bob, ticket_type_id, 1).status_code == 302
    fewer = take(client, ticket_type_id, 2, headers=HTMX)
    body = fewer.get_data(as_text=True)
    assert fewer.status_code == 409 and "Only 1 left: choose fewer tickets." in body
    assert "<html" not in body and "waitlist" not in body  # seats are left: no queue to join
    assert take(bob, ticket_type_id, 2).status_code == 302  # Bob takes the last seat too
    refused = take(client, ticket_type_id, 2, headers=HTMX)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "Sold out." in body and "<html" not in body
    assert 'action="/checkout/waitlist"' in body and f'value="{ticket_type_id}"' in body
    assert 'name="quantity" value="2"' in body and "Join the waitlist for 2 tickets" in body
    # Without JavaScript: the same on a page of its own, with the way back to the event
    page = take(client, ticket_type_id, 2)
    text = page.get_data(as_text=True)
    assert page.status_code == 409 and "<html" in text and "Join the waitlist for 2 tickets" in text
    assert f'href="/events/{event_id}"' in text
    assert counters(ticket_type_id) == (2, 0)
    assert db.session.scalar(select(func.count()).select_from(Hold).where(Hold.status == "active")) == 1
    # The button there queues the buyer for what they asked
    joined = post(client, "/checkout/waitlist", {"ticket_type_id": ticket_type_id, "quantity": 2},
                  token_from="/dashboard")
    assert joined.status_code == 302
    assert db.session.scalar(select(WaitlistEntry.quantity).where(WaitlistEntry.status == "waiting")) == 2


def test_a_new_hold_replaces_the_buyers_earlier_one(user_client, free_event, ctx):
    client, _ = user_client
    _, ticket_type_id = free_event
    take(client, ticket_type_id, 2)
    take(client, ticket_type_id, 3)
    statuses = sorted(db.session.scalars(select(Hold.status)))
    assert statuses == ["active", "released"]
    assert counters(ticket_type_id) == (3, 0)


def test_sales_window_is_enforced(user_client, make_event, make_ticket_type, ctx):
    client, _ = user_client
    event_id = make_event()
    later = make_ticket_type(event_id, name="Later", sales_starts_at=utcnow() + timedelta(days=1))
    over = make_ticket_type(event_id, name="Over", sales_starts_at=utcnow() - timedelta(days=2),
                            sales_ends_at=utcnow() - timedelta(days=1))
    assert "not started" in take(client, later, 1).get_data(as_text=True)
    response = take(client, over, 1)
    assert response.status_code == 409 and "ended" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Hold)) == 0


def test_draft_event_does_not_sell(user_client, make_event, make_ticket_type, ctx):
    client, _ = user_client
    ticket_type_id = make_ticket_type(make_event(status="draft"))
    assert take(client, ticket_type_id, 1).status_code == 409


def test_unknown_ticket_type_is_404(user_client):
    client, _ = user_client
    assert take(client, "nope", 1).status_code == 404


def test_holding_needs_sign_in(client, free_event):
    _, ticket_type_id = free_event
    response = client.post("/checkout/hold", data={"ticket_type_id": ticket_type_id, "quantity": 1,
                                                   "csrf_token": csrf_token(client, "/")})
    assert response.status_code == 302 and "/auth/login" in response.location


def test_someone_elses_hold_is_404_and_untouched(user_client, free_event, app, sign_in, make_user, ctx):
    client, _ = user_client
    _, ticket_type_id = free_event
    take(client, ticket_type_id, 1)
    hold_id = db.session.scalar(select(Hold.id))
    make_user("mallory@example.com")
    mallory = sign_in("mallory@example.com", app.test_client())
    assert mallory.get(f"/checkout/{hold_id}").status_code == 404
    token = csrf_token(mallory, "/dashboard")
    for path in (f"/checkout/{hold_id}/confirm", f"/checkout/{hold_id}/release"):
        assert mallory.post(path, data={"csrf_token": token, "payment_method": "free"}).status_code == 404
    assert db.session.scalar(select(Hold.status)) == "active"
    assert db.session.scalar(select(func.count()).select_from(Order)) == 0


def test_an_expired_hold_cannot_be_confirmed(user_client, free_event, ctx):
    client, _ = user_client
    _, ticket_type_id = free_event
    take(client, ticket_type_id, 2)
    hold_id = db.session.scalar(select(Hold.id))
    db.session.execute(update(Hold).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    response = confirm(client, hold_id)
    assert response.status_code == 410 and "expired" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Order)) == 0
    assert "has ended" in client.get(f"/checkout/{hold_id}").get_data(as_text=True)


def test_paid_ticket_cannot_be_confirmed_as_free(user_client, make_event, make_ticket_type, ctx):
    client, _ = user_client
    ticket_type_id = make_ticket_type(make_event(), price_cents=2500)
    take(client, ticket_type_id, 1)
    hold_id = db.session.scalar(select(Hold.id))
    assert confirm(client, hold_id, "free").status_code == 422
    assert confirm(client, hold_id, "pay_later").status_code == 422  # the organiser does not allow it
    assert confirm(client, hold_id, "bitcoin").status_code == 422
    assert counters(ticket_type_id) == (1, 0)


def test_pay_later_order_is_pending_until_marked_paid(user_client, make_event, make_ticket_type, ctx):
    client, user_id = user_client
    ticket_type_id = make_ticket_type(make_event(allow_pay_later=True), price_cents=2500)
    take(client, ticket_type_id, 1)
    confirm(client, db.session.scalar(select(Hold.id)), "pay_later")
    order = db.session.scalar(select(Order))
    assert order.status == OrderStatus.PENDING and order.total_cents == 2500
    assert counters(ticket_type_id) == (0, 1)  # the seat is taken
    assert db.session.scalar(select(func.count()).select_from(AccessGrant)) == 0  # access comes with payment


def test_release_gives_the_seats_back(user_client, free_event, ctx):
    client, _ = user_client
    _, ticket_type_id = free_event
    take(client, ticket_type_id, 3)
    hold_id = db.session.scalar(select(Hold.id))
    assert post(client, f"/checkout/{hold_id}/release", token_from=f"/checkout/{hold_id}").status_code == 302
    assert counters(ticket_type_id) == (0, 0)


def test_expiry_job_and_sweep_release_once(user_client, free_event, app, ctx):
    client, _ = user_client
    _, ticket_type_id = free_event
    take(client, ticket_type_id, 2)
    with app.app_context():
        assert expire_due_holds_job() == 0  # not due yet
    assert counters(ticket_type_id) == (2, 0)
    db.session.execute(update(Hold).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    with app.app_context():
        assert expire_due_holds_job() == 1
        assert expire_due_holds_job() == 0  # idempotent
        assert sweep_expired_holds() == 0
    assert counters(ticket_type_id) == (0, 0)
    assert db.session.scalar(select(Hold.status)) == "expired"


def test_holds_falling_due_in_one_second_share_one_expiry_job(app, make_event, make_ticket_type, make_user,
                                                               ctx):
    from app.checkout import services
    from app.checkout.jobs import schedule_hold_expiry
    from app.models import User

    ticket_type_id = make_ticket_type(make_event(), capacity=10)
    buyers = [make_user() for _ in range(3)]
    lifetime = timedelta(minutes=app.config["HOLD_MINUTES"])
    due = utcnow().replace(microsecond=0) + lifetime + timedelta(seconds=5)
    taken_at = [due - lifetime - timedelta(milliseconds=400), due - lifetime, due - lifetime + timedelta(seconds=1)]
    holds = [services.hold_seats(db.session.get(User, buyer), ticket_type_id, 1, now=at)
             for buyer, at in zip(buyers, taken_at)]
    db.session.commit()
    with app.app_context():
        for hold in holds:
            schedule_hold_expiry(hold)
    scheduled = {job.decode(): score for job, score in redis.zrange("rq:scheduled:default", 0, -1, withscores=True)}
    assert scheduled == {expiry_job_id(due): due.timestamp(),
                         expiry_job_id(holds[2].expires_at): due.timestamp() + 1}


def test_sweep_catches_holds_the_scheduler_missed(user_client, free_event, app, ctx):
    client, _ = user_client
    _, ticket_type_id = free_event
    take(client, ticket_type_id, 3)
    redis.delete("rq:scheduled:default")  # the scheduled job is lost
    db.session.execute(update(Hold).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    with app.app_context():
        assert sweep_expired_holds() == 1
    assert counters(ticket_type_id) == (0, 0)
    assert db.session.scalar(select(Hold.status)) == "expired"


def test_tickets_belong_to_their_buyer(user_client, free_event, ctx):
    client, user_id = user_client
    _, ticket_type_id = free_event
    take(client, ticket_type_id, 1)
    confirm(client, db.session.scalar(select(Hold.id)))
    assert set(db.session.scalars(select(Ticket.holder_user_id))) == {user_id}


def test_organiser_dashboard_shows_sales(user_client, free_event, app, sign_in, ctx):
    from app.models import Event
    client, _ = user_client
    event_id, ticket_type_id = free_event
    take(client, ticket_type_id, 2)
    confirm(client, db.session.scalar(select(Hold.id)))
    event = db.session.get(Event, event_id)
    owner_email = event.account.owners[0].user.email
    organiser = sign_in(owner_email, app.test_client())
    post(organiser, f"/accounts/{event.account_id}/switch", token_from="/dashboard")
    assert 'data-testid="sold">2 / 5<' in organiser.get("/manage").get_data(as_text=True)
