"""The waitlist of a sold-out ticket type: joining, leaving, offers of freed seats
that expire and pass on, and promotion racing with expiry and releases."""
import logging
import random
import re
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, update

from app.checkout import services, waitlist
from app.errors import DomainError
from app.checkout.jobs import expire_due_holds_job, expiry_job_id, promote_waitlists_job
from app.extensions import db, redis
from app.models import Hold, HoldStatus, Order, TicketType, User, WaitlistEntry, WaitlistStatus
from app.models.base import utcnow
from tests.conftest import csrf_token, post
from tests.test_checkout import confirm, counters, take
from tests.test_concurrency import race
from tests.test_sales_concurrency import assert_counters_match, signed_in_client


@pytest.fixture
def sold_out(make_event, make_ticket_type, make_user, ctx):
    """A ticket type of 2 seats, both held by a buyer: (event id, ticket type id, the buyer's hold id)."""
    event_id = make_event()
    ticket_type_id = make_ticket_type(event_id, capacity=2, max_per_order=3)
    buyer = db.session.get(User, make_user("buyer@example.com"))
    hold = services.hold_seats(buyer, ticket_type_id, 2)
    db.session.commit()
    return event_id, ticket_type_id, hold.id


def join(client, ticket_type_id, quantity=1):
    return post(client, "/checkout/waitlist", {"ticket_type_id": ticket_type_id, "quantity": quantity},
                token_from="/dashboard")


def leave(client, entry_id):
    return post(client, f"/checkout/waitlist/{entry_id}/leave", token_from="/dashboard")


def entries(ticket_type_id, status=None):
    db.session.expire_all()
    query = select(WaitlistEntry).where(WaitlistEntry.ticket_type_id == ticket_type_id)
    if status:
        query = query.where(WaitlistEntry.status == status)
    return db.session.scalars(query.order_by(WaitlistEntry.created_at)).all()


def make_due(*hold_ids):
    db.session.execute(update(Hold).where(Hold.id.in_(hold_ids)).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def another(app, sign_in, make_user, email):
    make_user(email)
    return sign_in(email, app.test_client())


def test_sold_out_ticket_offers_the_waitlist_to_signed_in_people(client, user_client, sold_out, app):
    signed_in, _ = user_client
    event_id, ticket_type_id, _ = sold_out
    page = signed_in.get(f"/events/{event_id}").get_data(as_text=True)
    assert "Sold out" in page and "Join the waitlist" in page and f'id="waitlist-{ticket_type_id}"' in page
    anonymous = app.test_client().get(f"/events/{event_id}").get_data(as_text=True)
    assert "Sign in</a> to join the waitlist" in anonymous and "Join the waitlist" not in anonymous


def test_join_see_position_and_leave(user_client, sold_out, app, sign_in, make_user):
    alice, alice_id = user_client
    event_id, ticket_type_id, _ = sold_out
    response = join(alice, ticket_type_id, 2)
    assert response.status_code == 302 and response.location.endswith(f"/events/{event_id}")
    bob = another(app, sign_in, make_user, "bob@example.com")
    assert join(bob, ticket_type_id).status_code == 302
    first, second = entries(ticket_type_id)
    assert (first.user_id, first.quantity, first.status) == (alice_id, 2, WaitlistStatus.WAITING)
    assert "number 1</strong> on the waitlist" in alice.get(f"/events/{event_id}").get_data(as_text=True)
    assert "number 2</strong> on the waitlist" in bob.get(f"/events/{event_id}").get_data(as_text=True)

    assert leave(alice, first.id).status_code == 302
    assert [e.status for e in entries(ticket_type_id)] == [WaitlistStatus.LEFT, WaitlistStatus.WAITING]
    assert "number 1</strong> on the waitlist" in bob.get(f"/events/{event_id}").get_data(as_text=True)
    assert "Join the waitlist" in alice.get(f"/events/{event_id}").get_data(as_text=True)
    assert leave(alice, first.id).status_code == 409  # already left
    assert join(alice, ticket_type_id).status_code == 302  # and may queue again, at the back
    assert waitlist.position(entries(ticket_type_id, WaitlistStatus.WAITING)[-1]) == 2


def test_cannot_join_while_seats_are_available(user_client, make_event, make_ticket_type, ctx):
    client, _ = user_client
    ticket_type_id = make_ticket_type(make_event(), capacity=5)
    response = join(client, ticket_type_id)
    assert response.status_code == 409 and "not sold out" in response.get_data(as_text=True)
    assert entries(ticket_type_id) == []


@pytest.mark.parametrize("quantity, message", [
    ("0", "Choose at least one ticket."),
    ("-1", "Choose at least one ticket."),
    ("4", "at most 3 of these per order"),
    ("lots", "Choose how many tickets you want."),
])
def test_bad_quantities_are_refused_and_write_nothing(user_client, sold_out, quantity, message):
    client, _ = user_client
    _, ticket_type_id, _ = sold_out
    response = join(client, ticket_type_id, quantity)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert entries(ticket_type_id) == []


def test_joining_twice_is_refused(user_client, sold_out):
    client, _ = user_client
    _, ticket_type_id, _ = sold_out
    assert join(client, ticket_type_id).status_code == 302
    response = join(client, ticket_type_id, 2)
    assert response.status_code == 409 and "already on the waitlist" in response.get_data(as_text=True)
    assert len(entries(ticket_type_id)) == 1


def test_a_buyer_holding_seats_is_sent_to_checkout(sold_out, app, sign_in):
    _, ticket_type_id, _ = sold_out
    buyer = sign_in("buyer@example.com", app.test_client())
    response = join(buyer, ticket_type_id)
    assert response.status_code == 409 and "complete your checkout" in response.get_data(as_text=True)


def test_unknown_ticket_type_and_closed_sales(user_client, make_event, make_ticket_type, ctx):
    client, _ = user_client
    assert join(client, "nope").status_code == 404
    over = make_ticket_type(make_event(), capacity=0, sales_starts_at=utcnow() - timedelta(days=2),
                            sales_ends_at=utcnow() - timedelta(days=1))
    assert join(client, over).status_code == 409
    assert db.session.scalar(select(func.count()).select_from(WaitlistEntry)) == 0


def test_joining_needs_sign_in_and_a_csrf_token(client, user_client, sold_out, app):
    signed_in, _ = user_client
    _, ticket_type_id, _ = sold_out
    anonymous = app.test_client()
    response = anonymous.post("/checkout/waitlist", data={"ticket_type_id": ticket_type_id, "quantity": 1,
                                                          "csrf_token": csrf_token(anonymous, "/")})
    assert response.status_code == 302 and "/auth/login" in response.location
    response = signed_in.post("/checkout/waitlist", data={"ticket_type_id": ticket_type_id, "quantity": 1})
    assert response.status_code == 400
    assert entries(ticket_type_id) == []


def test_someone_elses_entry_is_404_and_untouched(user_client, sold_out, app, sign_in, make_user):
    alice, _ = user_client
    _, ticket_type_id, _ = sold_out
    join(alice, ticket_type_id)
    entry_id = entries(ticket_type_id)[0].id
    mallory = another(app, sign_in, make_user, "mallory@example.com")
    assert leave(mallory, entry_id).status_code == 404
    assert leave(mallory, "nope").status_code == 404
    assert entries(ticket_type_id)[0].status == WaitlistStatus.WAITING


def test_an_expiring_hold_becomes_an_offer_for_the_first_in_line(user_client, sold_out, app, sign_in, make_user,
                                                                 run_jobs, outbox):
    alice, alice_id = user_client
    event_id, ticket_type_id, buyer_hold = sold_out
    join(alice, ticket_type_id)
    bob = another(app, sign_in, make_user, "bob@example.com")
    join(bob, ticket_type_id)
    carol = another(app, sign_in, make_user, "carol@example.com")
    join(carol, ticket_type_id)
    outbox.clear()

    make_due(buyer_hold)
    with app.app_context():
        assert expire_due_holds_job() == 1
    assert counters(ticket_type_id) == (2, 0)  # the seats moved from one hold to the offers, never free
    offered = entries(ticket_type_id, WaitlistStatus.OFFERED)
    assert [e.user_id for e in offered] == [alice_id, db.session.scalar(
        select(User.id).where(User.email == "bob@example.com"))]
    hold = db.session.get(Hold, offered[0].hold_id)
    assert hold.status == HoldStatus.ACTIVE and hold.user_id == alice_id and hold.quantity == 1
    assert abs((hold.expires_at - utcnow()) - timedelta(minutes=app.config["WAITLIST_OFFER_MINUTES"])) \
        < timedelta(seconds=30)
    # the offer expires like any hold: its job is scheduled
    assert redis.zscore("rq:scheduled:default", expiry_job_id(hold.expires_at)) is not None
    assert [e.status for e in entries(ticket_type_id)][-1] == WaitlistStatus.WAITING  # carol still waits
    assert "number 1</strong> on the waitlist" in carol.get(f"/events/{event_id}").get_data(as_text=True)
    # nobody outside the queue can take the freed seats
    dave = another(app, sign_in, make_user, "dave@example.com")  # (its sign-in runs the queued mail)
    assert take(dave, ticket_type_id, 1).status_code == 409

    run_jobs()
    mail = outbox.to("alice@example.com")[-1]
    body = mail.get_body(("plain",)).get_content()
    assert "Launch Night" in mail["Subject"] and f"/checkout/{hold.id}" in body
    assert len(outbox.to("bob@example.com")) == 1 and outbox.to("carol@example.com") == []
    with app.app_context():
        assert expire_due_holds_job() == 0
    run_jobs()
    assert len(outbox.to("alice@example.com")) == 1  # mailed once

    # the offer is confirmed like any hold
    page = alice.get(re.search(r"(/checkout/\w+)", body).group(1)).get_data(as_text=True)
    assert "held for" in page
    assert "Complete your order" in alice.get(f"/events/{event_id}").get_data(as_text=True)
    response = confirm(alice, hold.id)
    assert response.status_code == 302
    assert db.session.scalar(select(Order.user_id)) == alice_id
    assert counters(ticket_type_id) == (1, 1)
    assert_counters_match(ticket_type_id)


def test_an_unclaimed_offer_passes_to_the_next_in_line(user_client, sold_out, app, sign_in, make_user, run_jobs,
                                                       outbox):
    alice, alice_id = user_client
    _, ticket_type_id, buyer_hold = sold_out
    join(alice, ticket_type_id, 2)
    bob = another(app, sign_in, make_user, "bob@example.com")
    join(bob, ticket_type_id, 2)
    make_due(buyer_hold)
    with app.app_context():
        expire_due_holds_job()
    alice_offer = db.session.get(Hold, entries(ticket_type_id, WaitlistStatus.OFFERED)[0].hold_id)
    assert alice_offer.user_id == alice_id and alice_offer.quantity == 2

    make_due(alice_offer.id)
    with app.app_context():
        assert expire_due_holds_job() == 1
    db.session.expire_all()
    assert db.session.get(Hold, alice_offer.id).status == HoldStatus.EXPIRED
    assert confirm(alice, alice_offer.id).status_code == 410  # too late
    bob_entry = entries(ticket_type_id)[1]
    assert bob_entry.status == WaitlistStatus.OFFERED
    assert db.session.get(Hold, bob_entry.hold_id).quantity == 2
    assert counters(ticket_type_id) == (2, 0)
    run_jobs()
    assert f"/checkout/{bob_entry.hold_id}" in outbox.to("bob@example.com")[-1].get_body(("plain",)).get_content()

    # nobody waits any more: the next expiry puts the seats back on sale
    make_due(bob_entry.hold_id)
    with app.app_context():
        expire_due_holds_job()
    assert counters(ticket_type_id) == (0, 0)
    assert take(alice, ticket_type_id, 1).status_code == 302


def test_fewer_seats_than_asked_are_offered_in_order(user_client, sold_out, app, sign_in, make_user, ctx,
                                                     run_jobs, outbox):
    alice, alice_id = user_client
    _, ticket_type_id, buyer_hold = sold_out
    join(alice, ticket_type_id, 3)
    make_due(buyer_hold)
    with app.app_context():
        expire_due_holds_job()
    offer = db.session.get(Hold, entries(ticket_type_id)[0].hold_id)
    assert offer.quantity == 2 and counters(ticket_type_id) == (2, 0)
    run_jobs()
    assert "You asked for 3" in outbox.to("alice@example.com")[-1].get_body(("plain",)).get_content()


def test_a_released_hold_goes_to_the_waitlist_in_the_same_request(user_client, sold_out, app, sign_in, run_jobs,
                                                                  outbox):
    alice, alice_id = user_client
    _, ticket_type_id, buyer_hold = sold_out
    join(alice, ticket_type_id)
    buyer = sign_in("buyer@example.com", app.test_client())
    response = post(buyer, f"/checkout/{buyer_hold}/release", token_from="/dashboard")
    assert response.status_code == 302
    assert counters(ticket_type_id) == (1, 0)  # one seat offered, one back on sale: nobody else waits
    entry = entries(ticket_type_id)[0]
    assert entry.status == WaitlistStatus.OFFERED and db.session.get(Hold, entry.hold_id).user_id == alice_id
    run_jobs()
    assert f"/checkout/{entry.hold_id}" in outbox.to("alice@example.com")[-1].get_body(("plain",)).get_content()


def test_the_sweep_offers_seats_freed_elsewhere(user_client, sold_out, app, run_jobs, outbox):
    alice, alice_id = user_client
    _, ticket_type_id, _ = sold_out
    join(alice, ticket_type_id, 2)
    db.session.execute(update(TicketType).where(TicketType.id == ticket_type_id).values(capacity=3))
    db.session.commit()  # an organiser raised the capacity: nothing promoted yet
    with app.app_context():
        assert promote_waitlists_job() == 1
        assert promote_waitlists_job() == 0
    entry = entries(ticket_type_id)[0]
    assert entry.status == WaitlistStatus.OFFERED and db.session.get(Hold, entry.hold_id).quantity == 1
    assert counters(ticket_type_id) == (3, 0)
    run_jobs()
    assert f"/checkout/{entry.hold_id}" in outbox.to("alice@example.com")[-1].get_body(("plain",)).get_content()


def test_someone_without_an_e_mail_address_gets_the_offer_by_text(sold_out, app, run_jobs, caplog):
    caplog.set_level(logging.INFO)
    _, ticket_type_id, buyer_hold = sold_out
    phone_only = User(phone="+447700900123")
    db.session.add(phone_only)
    db.session.commit()
    waitlist.join_waitlist(phone_only, ticket_type_id, 1)
    db.session.commit()
    make_due(buyer_hold)
    with app.app_context():
        expire_due_holds_job()
    hold_id = entries(ticket_type_id)[0].hold_id
    run_jobs()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SMS (console adapter)")]
    assert "+447700900123" in line and f"/checkout/{hold_id}" in line


def test_seats_freed_after_the_sold_out_read_are_offered_to_the_joiner_at_once(sold_out, app, make_user):
    _, ticket_type_id, _ = sold_out
    joiner = db.session.get(User, make_user())

    def free_a_seat(*_):  # after the join read "sold out", before its entry is written
        with app.app_context():  # another session: a seat comes free where nothing promotes
            db.session.execute(update(TicketType).where(TicketType.id == ticket_type_id).values(capacity=3))
            db.session.commit()

    event.listen(db.session(), "before_flush", free_a_seat, once=True)
    entry = waitlist.join_waitlist(joiner, ticket_type_id, 2)
    db.session.commit()
    db.session.refresh(entry)
    assert entry.status == WaitlistStatus.OFFERED
    assert db.session.get(Hold, entry.hold_id).quantity == 1 and counters(ticket_type_id) == (3, 0)


def test_the_offer_link_is_not_for_anyone_else(user_client, sold_out, app, sign_in, make_user):
    alice, _ = user_client
    _, ticket_type_id, buyer_hold = sold_out
    join(alice, ticket_type_id)
    make_due(buyer_hold)
    with app.app_context():
        expire_due_holds_job()
    hold_id = entries(ticket_type_id)[0].hold_id
    mallory = another(app, sign_in, make_user, "mallory@example.com")
    assert mallory.get(f"/checkout/{hold_id}").status_code == 404
    assert confirm(mallory, hold_id).status_code == 404


def assert_offers_sound(ticket_type_id):
    """Every offer is one hold of its own person, never more seats than they asked for."""
    offered = entries(ticket_type_id, WaitlistStatus.OFFERED)
    hold_ids = [e.hold_id for e in offered]
    assert None not in hold_ids and len(set(hold_ids)) == len(hold_ids)
    for entry in offered:
        hold = db.session.get(Hold, entry.hold_id)
        assert hold.user_id == entry.user_id and 1 <= hold.quantity <= entry.quantity
    return offered


def active_hold_ids(ticket_type_id):
    return set(db.session.scalars(select(Hold.id).where(
        Hold.ticket_type_id == ticket_type_id, Hold.status == HoldStatus.ACTIVE)))


def in_app(app, work):
    def run():
        try:
            with app.app_context():
                work()
            return "ok"
        except Exception as exc:  # a deadlock or a broken invariant would surface here
            return repr(exc)
    return run


@pytest.mark.concurrency
def test_many_promotions_of_the_same_free_seats_offer_each_seat_once(app, make_event, make_ticket_type, make_user,
                                                                     ctx):
    """Seats freed where nothing promotes (a Stripe session ending, a raised capacity),
    then promotions, sweeps and expiry jobs all at once, several rounds."""
    for round_ in range(3):
        ticket_type_id = make_ticket_type(make_event(), capacity=6, max_per_order=2, name=f"Round {round_}")
        buyers = [db.session.get(User, make_user()) for _ in range(6)]
        hold_ids = [services.hold_seats(buyer, ticket_type_id, 1).id for buyer in buyers]
        db.session.commit()
        for _ in range(8):
            waitlist.join_waitlist(db.session.get(User, make_user()), ticket_type_id, 1)
            db.session.commit()
        queue = [e.user_id for e in entries(ticket_type_id)]
        for hold_id in hold_ids:
            services.end_card_payment({"metadata": {"hold_id": hold_id}})  # releases, does not promote
        db.session.commit()
        assert counters(ticket_type_id) == (0, 0)

        def promote():
            waitlist.promote_waitlist(ticket_type_id)
            db.session.commit()

        outcomes = race([in_app(app, promote) for _ in range(8)]
                        + [in_app(app, promote_waitlists_job) for _ in range(3)]
                        + [in_app(app, expire_due_holds_job) for _ in range(2)])
        assert set(outcomes) == {"ok"}, [o for o in outcomes if o != "ok"][:3]
        ticket_type = assert_counters_match(ticket_type_id)
        offered = assert_offers_sound(ticket_type_id)
        assert ticket_type.held == 6 and len(offered) == 6
        assert sorted(e.user_id for e in offered) == sorted(queue[:6])
        assert active_hold_ids(ticket_type_id) == {e.hold_id for e in offered}


@pytest.mark.concurrency
def test_expiries_releases_and_promotions_racing_never_oversell_nor_offer_twice(
        app, make_event, make_ticket_type, make_user, ctx):
    """10 seats held, 15 people waiting; every hold falls due and is released while expiry
    jobs, sweeps and promotions run at once: the 10 seats go to the first 10 in line."""
    ticket_type_id = make_ticket_type(make_event(), capacity=10, max_per_order=3)
    buyers = [db.session.get(User, make_user()) for _ in range(10)]
    hold_ids = [services.hold_seats(buyer, ticket_type_id, 1).id for buyer in buyers]
    db.session.commit()
    waiters = [db.session.get(User, make_user()) for _ in range(15)]
    for waiter in waiters:
        waitlist.join_waitlist(waiter, ticket_type_id, 1)
        db.session.commit()
    queue = [e.user_id for e in entries(ticket_type_id)]
    make_due(*hold_ids)

    def in_app(work):
        def run():
            try:
                with app.app_context():
                    work()
                return "ok"
            except Exception as exc:  # a deadlock or an oversell would surface here
                return repr(exc)
        return run

    def release(hold_id):  # the buyer's "release" route
        if services.release_hold(hold_id):
            waitlist.promote_waitlist(ticket_type_id)
        db.session.commit()

    def promote():
        waitlist.promote_waitlist(ticket_type_id)
        db.session.commit()

    outcomes = race([in_app(lambda h=h: release(h)) for h in hold_ids[::2]]
                    + [in_app(expire_due_holds_job) for _ in range(4)]
                    + [in_app(promote_waitlists_job) for _ in range(2)]
                    + [in_app(promote) for _ in range(4)])
    assert set(outcomes) == {"ok"}, [o for o in outcomes if o != "ok"][:3]
    ticket_type = assert_counters_match(ticket_type_id)
    assert ticket_type.held == 10 and ticket_type.sold == 0
    offered = assert_offers_sound(ticket_type_id)
    assert sorted(e.user_id for e in offered) == sorted(queue[:10])  # first come, first served
    assert active_hold_ids(ticket_type_id) == {e.hold_id for e in offered}  # no stray offer

    # every offer runs out at once: the 5 still waiting get 5 of the seats, 5 go back on sale
    make_due(*[e.hold_id for e in offered])
    outcomes = race([in_app(expire_due_holds_job) for _ in range(4)]
                    + [in_app(promote_waitlists_job) for _ in range(2)]
                    + [in_app(promote) for _ in range(4)])
    assert set(outcomes) == {"ok"}, [o for o in outcomes if o != "ok"][:3]
    ticket_type = assert_counters_match(ticket_type_id)
    assert ticket_type.held == 5
    offered = assert_offers_sound(ticket_type_id)
    assert len(offered) == 15 and entries(ticket_type_id, WaitlistStatus.WAITING) == []


@pytest.mark.concurrency
def test_random_demand_racing_keeps_the_invariants(app, make_event, make_ticket_type, make_user, ctx):
    """Random hold and waitlist sizes, releases, expiries, buyers, joins and leaves at once."""
    ticket_type_id = make_ticket_type(make_event(), capacity=12, max_per_order=3)
    holders = []
    while True:
        buyer = db.session.get(User, make_user())
        try:
            hold = services.hold_seats(buyer, ticket_type_id, random.randint(1, 3))
        except services.SoldOut:
            db.session.rollback()
            break
        db.session.commit()
        holders.append(hold.id)
    if counters(ticket_type_id)[0] < 12:  # top up to sold out
        services.hold_seats(db.session.get(User, make_user()), ticket_type_id, 12 - counters(ticket_type_id)[0])
        db.session.commit()
        holders = list(db.session.scalars(select(Hold.id).where(Hold.status == HoldStatus.ACTIVE)))
    for _ in range(12):
        waitlist.join_waitlist(db.session.get(User, make_user()), ticket_type_id, random.randint(1, 3))
        db.session.commit()
    make_due(*holders[::2])
    late_ids = [make_user() for _ in range(6)]
    late_clients = [signed_in_client(app, user_id) for user_id in late_ids]
    tokens = [csrf_token(c, "/dashboard") for c in late_clients]
    leaving = entries(ticket_type_id)[-1]

    def in_app(work):
        def run():
            try:
                with app.app_context():
                    work()
                return "ok"
            except Exception as exc:
                return repr(exc)
        return run

    def release(hold_id):
        if services.release_hold(hold_id):
            waitlist.promote_waitlist(ticket_type_id)
        db.session.commit()

    def leave_queue():
        try:
            waitlist.leave_waitlist(db.session.get(User, leaving.user_id), leaving.id)
            db.session.commit()
        except DomainError:  # seats reached them first: a fair answer
            db.session.rollback()

    def buy_or_join(client, token, i):
        def run():
            path = "/checkout/hold" if i % 2 else "/checkout/waitlist"
            code = client.post(path, data={"ticket_type_id": ticket_type_id, "quantity": 1,
                                           "csrf_token": token}).status_code
            return "ok" if code in (302, 409) else f"status {code}"
        return run

    outcomes = race([in_app(lambda h=h: release(h)) for h in holders[1::2]]
                    + [in_app(expire_due_holds_job) for _ in range(3)]
                    + [in_app(promote_waitlists_job) for _ in range(2)]
                    + [in_app(leave_queue)]
                    + [buy_or_join(c, t, i) for i, (c, t) in enumerate(zip(late_clients, tokens))])
    assert set(outcomes) == {"ok"}, [o for o in outcomes if o != "ok"][:3]
    ticket_type = assert_counters_match(ticket_type_id)
    assert_offers_sound(ticket_type_id)
    # after it all: either nothing is free or nobody waits
    assert ticket_type.available == 0 or entries(ticket_type_id, WaitlistStatus.WAITING) == []
