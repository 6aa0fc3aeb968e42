"""Capacity is never exceeded, whatever the interleaving: real threads on the real
database, and random sequences of operations (hypothesis)."""
import random
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select, update

from app.checkout import services
from app.errors import DomainError
from app.extensions import db
from app.models import Hold, HoldStatus, OrderItem, PaymentMethod, Ticket, TicketType, User
from app.models.base import new_id, utcnow
from tests.conftest import csrf_token
from tests.test_concurrency import race

pytestmark = pytest.mark.concurrency


def signed_in_client(app, user_id):
    """A browser already signed in (Flask-Login's session keys), to spare 40 code flows."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = user_id
        session["_fresh"] = True
    return client


def assert_counters_match(ticket_type_id):
    """held = active holds, sold = seats in orders = tickets issued, never above capacity."""
    db.session.expire_all()
    ticket_type = db.session.get(TicketType, ticket_type_id)
    active = db.session.scalar(select(func.coalesce(func.sum(Hold.quantity), 0)).where(
        Hold.ticket_type_id == ticket_type_id, Hold.status == HoldStatus.ACTIVE))
    ordered = db.session.scalar(select(func.coalesce(func.sum(OrderItem.quantity), 0)).where(
        OrderItem.ticket_type_id == ticket_type_id))
    tickets = db.session.scalar(select(func.count()).select_from(Ticket).where(Ticket.ticket_type_id == ticket_type_id))
    assert ticket_type.held == active
    assert ticket_type.sold == ordered == tickets
    assert ticket_type.sold + ticket_type.held <= ticket_type.capacity
    return ticket_type


def test_a_rush_of_buyers_never_oversells(app, make_event, make_ticket_type, make_user, ctx):
    event_id = make_event()
    for round_ in range(3):
        ticket_type_id = make_ticket_type(event_id, capacity=10, max_per_order=3, name=f"Drop {round_}")
        buyers = [signed_in_client(app, make_user()) for _ in range(30)]
        tokens = [csrf_token(c, "/dashboard") for c in buyers]
        wanted = [random.randint(1, 3) for _ in buyers]
        statuses = race([lambda c=c, t=t, q=q: c.post("/checkout/hold", data={
            "ticket_type_id": ticket_type_id, "quantity": q, "csrf_token": t}).status_code
            for c, t, q in zip(buyers, tokens, wanted)])
        assert set(statuses) <= {302, 409}, statuses
        ticket_type = assert_counters_match(ticket_type_id)
        assert ticket_type.held == sum(q for q, s in zip(wanted, statuses) if s == 302)
        assert ticket_type.held >= 8  # the seats did sell: at most 2 left over when the rest asked for 3

        # the winners confirm (twice each, same key), release or let expire, all at once
        holders = [(c, t) for c, t, s in zip(buyers, tokens, statuses) if s == 302]
        holds = {h.user_id: h.id for h in db.session.scalars(select(Hold).where(
            Hold.ticket_type_id == ticket_type_id, Hold.status == HoldStatus.ACTIVE))}
        db.session.execute(update(Hold).where(Hold.id == list(holds.values())[0])
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        actions = []
        for i, (c, t) in enumerate(holders):
            with c.session_transaction() as session:
                hold_id = holds[session["_user_id"]]
            if i % 3 == 2:
                actions.append(lambda c=c, t=t, h=hold_id: c.post(f"/checkout/{h}/release", data={"csrf_token": t}))
            else:
                for _ in range(2):
                    actions.append(lambda c=c, t=t, h=hold_id: c.post(f"/checkout/{h}/confirm", data={
                        "csrf_token": t, "payment_method": "free", "idempotency_key": f"k-{h}"}))
        def sweep():
            with app.app_context():  # the worker's sweep, running beside the buyers
                services.expire_due_holds()
                db.session.commit()
        actions.append(sweep)
        responses = race(actions)
        codes = [r.status_code for r in responses if hasattr(r, "status_code")]
        assert all(code < 500 for code in codes), codes
        assert_counters_match(ticket_type_id)


class HoldLifecycle(RuleBasedStateMachine):
    """Random holds, confirmations, expiries, releases and sweeps on one ticket type."""

    app = None

    @initialize()
    def setup(self):
        from app.models import Event, EventStatus, Room, RoomKind
        from app.accounts.services import create_organization

        self.users = []
        for _ in range(3):
            user = User(email=f"prop-{new_id()}@example.com")
            db.session.add(user)
            self.users.append(user)
        db.session.flush()
        account = create_organization(self.users[0], "Prop Org")
        starts = utcnow() + timedelta(days=1)
        event = Event(account_id=account.id, slug=new_id(), name="Prop", starts_at=starts,
                      ends_at=starts + timedelta(hours=1), status=EventStatus.ACTIVE)
        event.rooms = [Room(name="Main", kind=RoomKind.MAIN, is_main_room=True)]
        self.ticket_type = TicketType(event=event, name="GA", capacity=6, max_per_order=4)
        self.ticket_type.rooms = [event.rooms[0]]
        db.session.add(event)
        db.session.commit()
        self.holds = []

    def attempt(self, operation):
        try:
            result = operation()
            db.session.commit()
            return result
        except DomainError:
            db.session.rollback()
            return None

    @rule(user=st.integers(0, 2), quantity=st.integers(-1, 5))
    def hold(self, user, quantity):
        hold = self.attempt(lambda: services.hold_seats(self.users[user], self.ticket_type.id, quantity))
        if hold is not None:
            self.holds.append((hold.id, self.users[user]))

    @rule(index=st.integers(0, 30), twice=st.booleans())
    def confirm(self, index, twice):
        if self.holds:
            hold_id, user = self.holds[index % len(self.holds)]
            for _ in range(2 if twice else 1):
                self.attempt(lambda: services.confirm_hold(user, hold_id, f"key-{hold_id}", PaymentMethod.FREE))

    @rule(index=st.integers(0, 30))
    def expire(self, index):
        if self.holds:
            hold_id, _ = self.holds[index % len(self.holds)]
            db.session.execute(update(Hold).where(Hold.id == hold_id).values(expires_at=utcnow() - timedelta(seconds=1)))
            db.session.commit()
            self.attempt(lambda: services.expire_hold(hold_id))

    @rule(index=st.integers(0, 30))
    def release(self, index):
        if self.holds:
            hold_id, _ = self.holds[index % len(self.holds)]
            self.attempt(lambda: services.release_hold(hold_id))

    @rule()
    def sweep(self):
        self.attempt(services.expire_due_holds)

    @invariant()
    def counters_match(self):
        if getattr(self, "ticket_type", None) is not None:
            assert_counters_match(self.ticket_type.id)


def test_random_sequences_keep_the_invariants(ctx):
    HoldLifecycle.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                               suppress_health_check=list(HealthCheck))
    HoldLifecycle.TestCase().runTest()


def test_expiry_jobs_sweeps_and_releases_race_without_deadlock(app, make_event, make_ticket_type, make_user,
                                                               ctx):
    from app.checkout.jobs import expire_due_holds_job, sweep_expired_holds

    ticket_type_id = make_ticket_type(make_event(), capacity=100, max_per_order=1)
    buyers = [db.session.get(User, make_user()) for _ in range(40)]
    hold_ids = [services.hold_seats(buyer, ticket_type_id, 1).id for buyer in buyers]
    db.session.commit()
    db.session.execute(update(Hold).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    def in_app(work):
        def run():
            try:
                with app.app_context():
                    work()
                return "ok"
            except Exception as exc:  # a deadlock would surface here
                return repr(exc)
        return run

    def release(hold_id):  # the buyer's "release" and a late card payment's expire_hold
        if services.release_hold(hold_id, HoldStatus.EXPIRED):
            db.session.commit()
        else:
            db.session.rollback()

    outcomes = race([in_app(lambda h=h: release(h)) for h in hold_ids[::2]]
                    + [in_app(expire_due_holds_job) for _ in range(4)]
                    + [in_app(sweep_expired_holds) for _ in range(2)])
    assert set(outcomes) == {"ok"}, [o for o in outcomes if o != "ok"][:3]
    ticket_type = assert_counters_match(ticket_type_id)
    assert ticket_type.held == 0
    assert set(db.session.scalars(select(Hold.status))) == {"expired"}
