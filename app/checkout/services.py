"""Selling seats: holds that expire, orders, tickets, check-in.

Capacity is guarded in the database, not in Python: every change to a ticket
type's counters is a single conditional UPDATE (`sold + held + n <= capacity`),
and a CHECK constraint refuses any row that would break it. Hold transitions are
conditional on the hold's current status, so a hold is released or confirmed at
most once, whatever runs at the same time (an expiry job, the sweep, the buyer).
"""
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.access.services import grant_role
from app.errors import DomainError, NotFound
from app.extensions import db
from app.integrations import stripe
from app.models import (Event, EventStatus, GrantSource, Hold, HoldStatus, Order, OrderItem, OrderStatus,
                        PaymentMethod, Retailer, Ticket, TicketStatus, TicketType, User)
from app.models.base import new_id, utcnow

log = logging.getLogger(__name__)

ORDER_NUMBER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I to misread at the door
ATTENDEE_ROLE = "attendee"
UPGRADE_ROLE = "vip"  # attendee + a place in the backstage queue


class SoldOut(DomainError):
    """Fewer seats left than asked for. With none left (`left` 0) the waitlist is open."""

    status = 409

    def __init__(self, left, quantity, ticket_type_id, event_id):
        super().__init__("Sold out." if left <= 0 else f"Only {left} left: choose fewer tickets.")
        self.left, self.quantity, self.ticket_type_id, self.event_id = left, quantity, ticket_type_id, event_id


class HoldGone(DomainError):
    status = 410


def parse_quantity(raw, terms):
    """`terms` as sale_terms() reads them."""
    try:
        quantity = int(raw)
    except (TypeError, ValueError):
        raise DomainError("Choose how many tickets you want.", 422) from None
    if quantity < 1:
        raise DomainError("Choose at least one ticket.", 422)
    if quantity > terms.max_per_order:
        raise DomainError(f"You can take at most {terms.max_per_order} of these per order.", 422)
    return quantity


# A ticket type's terms of sale as one row: its event's state, the sales window, the
# seats left, and how many the asking user holds already. Statements built once at
# import: in a drop, building them on every request cost more than running them.
_own_active_seats = (
    select(func.coalesce(func.sum(Hold.quantity), 0))
    .where(Hold.user_id == bindparam("user_id"), Hold.ticket_type_id == TicketType.id,
           Hold.status == HoldStatus.ACTIVE)
    .scalar_subquery())
_SALE_TERMS = (
    select(TicketType.event_id, TicketType.max_per_order, TicketType.sales_starts_at, TicketType.sales_ends_at,
           (TicketType.capacity - TicketType.sold - TicketType.held).label("available"),
           Event.status.label("event_status"), Event.ends_at.label("event_ends_at"),
           _own_active_seats.label("own_held"))
    .join(Event, Event.id == TicketType.event_id)
    .where(TicketType.id == bindparam("ticket_type_id")))
_TAKE_SEATS = (
    update(TicketType)
    .where(TicketType.id == bindparam("ticket_type_id"),
           TicketType.sold + TicketType.held + bindparam("quantity") <= TicketType.capacity)
    .values(held=TicketType.held + bindparam("quantity")))
_INSERT_HOLD = insert(Hold)


def sale_terms(ticket_type_id, user_id=None):
    """(event_id, max_per_order, sales_starts_at, sales_ends_at, available, event_status,
    event_ends_at, own_held), read in the caller's transaction."""
    terms = db.session.connection().execute(
        _SALE_TERMS, {"ticket_type_id": ticket_type_id, "user_id": user_id}).first()
    if terms is None:
        raise NotFound("There is no such ticket.")
    return terms


def check_on_sale(terms, now):
    """`terms` as sale_terms() reads them."""
    if terms.event_status != EventStatus.ACTIVE or terms.event_ends_at <= now:
        raise DomainError("This event is not selling tickets.", 409)
    if terms.sales_starts_at and now < terms.sales_starts_at:
        raise DomainError("Sales for this ticket have not started yet.", 409)
    if terms.sales_ends_at and now >= terms.sales_ends_at:
        raise DomainError("Sales for this ticket have ended.", 409)


@dataclass(frozen=True)
class NewHold:
    """What hold_seats made: enough to schedule its expiry and send the buyer to checkout."""

    id: str
    ticket_type_id: str
    quantity: int
    expires_at: datetime


def hold_seats(user, ticket_type_id, raw_quantity, now=None):
    """Reserve seats for HOLD_MINUTES. Replaces the buyer's earlier hold on the same type.

    In a drop this runs for every buyer at once: one read, and for those who get
    seats one conditional UPDATE and one INSERT, all in Core (no ORM objects)."""
    now = now or utcnow()
    terms = sale_terms(ticket_type_id, user.id)
    quantity = parse_quantity(raw_quantity, terms)
    check_on_sale(terms, now)
    # Sold out as just read (the buyer's own hold counts as free: it is replaced): say so
    # without writing. In a drop most buyers land here, and a refusal that takes no write
    # lock keeps the database free for those still getting seats. The conditional UPDATE
    # below remains the guard against overselling; a seat freed since this read goes to
    # the next buyer, as it would have a moment later anyway.
    within_reach = max(terms.available, 0) + terms.own_held
    if within_reach < quantity:
        raise SoldOut(within_reach, quantity, ticket_type_id, terms.event_id)
    if terms.own_held:
        for hold_id in db.session.scalars(select(Hold.id).where(
                Hold.user_id == user.id, Hold.ticket_type_id == ticket_type_id, Hold.status == HoldStatus.ACTIVE)):
            release_hold(hold_id, HoldStatus.RELEASED, now)
    connection = db.session.connection()
    if not connection.execute(_TAKE_SEATS, {"ticket_type_id": ticket_type_id, "quantity": quantity}).rowcount:
        raise SoldOut(max(sale_terms(ticket_type_id).available, 0), quantity, ticket_type_id, terms.event_id)
    hold = NewHold(new_id(), ticket_type_id, quantity, now + timedelta(minutes=current_app.config["HOLD_MINUTES"]))
    connection.execute(_INSERT_HOLD, {
        "id": hold.id, "ticket_type_id": ticket_type_id, "event_id": terms.event_id, "user_id": user.id,
        "quantity": quantity, "status": HoldStatus.ACTIVE, "expires_at": hold.expires_at, "created_at": now})
    return hold


def release_hold(hold_id, to_status=HoldStatus.RELEASED, now=None, only_if_due=False):
    """Give the seats back, once. Returns True when this call released them."""
    now = now or utcnow()
    conditions = [Hold.id == hold_id, Hold.status == HoldStatus.ACTIVE]
    if only_if_due:
        conditions.append(Hold.expires_at <= now)
    hold_row = db.session.execute(
        update(Hold).where(*conditions).values(status=to_status, ended_at=now)
        .returning(Hold.ticket_type_id, Hold.quantity)
        .execution_options(synchronize_session=False)).first()
    if hold_row is None:
        return False
    db.session.execute(
        update(TicketType).where(TicketType.id == hold_row.ticket_type_id)
        .values(held=TicketType.held - hold_row.quantity)
        .execution_options(synchronize_session=False))
    return True


def expire_hold(hold_id, now=None):
    """Expire this one hold if it is still active and due (a late card payment finds it so)."""
    return release_hold(hold_id, HoldStatus.EXPIRED, now, only_if_due=True)


def expire_due_holds(now=None, batch=1000):
    """Expire up to `batch` active holds past their time. Returns how many.

    Set-based and deadlock-free: due holds are claimed with SKIP LOCKED (a hold a
    job or the buyer is releasing right now is left to them), then each ticket
    type's counter is changed once, after the holds - the same hold-then-counter
    order as a single release. Holding a counter's row lock across a long batch
    while claiming holds one by one deadlocked with per-hold releases.
    """
    now = now or utcnow()
    due = (select(Hold.id).where(Hold.status == HoldStatus.ACTIVE, Hold.expires_at <= now)
           .limit(batch).with_for_update(skip_locked=True).scalar_subquery())
    released = db.session.execute(
        update(Hold).where(Hold.id.in_(due), Hold.status == HoldStatus.ACTIVE, Hold.expires_at <= now)
        .values(status=HoldStatus.EXPIRED, ended_at=now)
        .returning(Hold.ticket_type_id, Hold.quantity)
        .execution_options(synchronize_session=False)).all()
    seats = defaultdict(int)
    for ticket_type_id, quantity in released:
        seats[ticket_type_id] += quantity
    from app.checkout.waitlist import promote_waitlist  # waitlist builds on this module

    for ticket_type_id in sorted(seats):
        db.session.execute(
            update(TicketType).where(TicketType.id == ticket_type_id)
            .values(held=TicketType.held - seats[ticket_type_id])
            .execution_options(synchronize_session=False))
        # In the same transaction: the freed seats pass to the waitlist (as offers)
        # without ever showing as available, so nobody jumps the queue.
        promote_waitlist(ticket_type_id, now)
    return len(released)


def own_hold(user, hold_id):
    hold = db.session.get(Hold, hold_id)
    if hold is None or hold.user_id != user.id:
        raise NotFound("There is no such reservation.")  # someone else's hold looks like none
    return hold


def _order_number():
    return "EV-" + "".join(secrets.choice(ORDER_NUMBER_ALPHABET) for _ in range(7))


def _ticket_code():
    return secrets.token_urlsafe(18)  # 144 random bits


def find_order_by_key(user, idempotency_key):
    return db.session.scalar(select(Order).where(
        Order.user_id == user.id, Order.idempotency_key == idempotency_key))


def confirm_hold(user, hold_id, idempotency_key, payment_method, now=None, stripe_session_id=None):
    """Turn an active hold into an order with its tickets and (when paid) access.

    All in the caller's transaction. A confirm submitted twice with the same
    idempotency key returns the first order; a hold confirms at most once.
    """
    now = now or utcnow()
    existing = find_order_by_key(user, idempotency_key) if idempotency_key else None
    if existing:
        return existing
    hold = own_hold(user, hold_id)
    ticket_type = hold.ticket_type
    if payment_method == PaymentMethod.FREE and not ticket_type.is_free:
        raise DomainError("This ticket is not free.", 422)
    if payment_method == PaymentMethod.PAY_LATER and not hold.event.allow_pay_later:
        raise DomainError("The organiser does not take payment later for this event.", 422)
    confirmed = db.session.execute(
        update(Hold).where(Hold.id == hold.id, Hold.status == HoldStatus.ACTIVE, Hold.expires_at > now)
        .values(status=HoldStatus.CONFIRMED, ended_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if not confirmed:
        again = find_order_by_key(user, idempotency_key) if idempotency_key else None
        if again:
            return again
        raise HoldGone("Your reservation has expired and the seats were released. Please choose again.")
    db.session.execute(
        update(TicketType).where(TicketType.id == ticket_type.id)
        .values(held=TicketType.held - hold.quantity, sold=TicketType.sold + hold.quantity)
        .execution_options(synchronize_session=False))
    return _issue_order(user, hold, payment_method, idempotency_key, stripe_session_id, now)


def _issue_order(user, hold, payment_method, idempotency_key, stripe_session_id, now):
    """The order, its tickets and (when paid) access, for a hold whose seats are already sold."""
    ticket_type = hold.ticket_type
    paid = payment_method in (PaymentMethod.FREE, PaymentMethod.STRIPE)
    order = Order(number=_order_number(), event_id=hold.event_id, user_id=user.id, retailer=Retailer.DIRECT,
                  status=OrderStatus.PAID if paid else OrderStatus.PENDING, payment_method=payment_method,
                  total_cents=ticket_type.price_cents * hold.quantity, currency=ticket_type.currency,
                  buyer_email=user.email, buyer_name=user.name or user.display_name,
                  idempotency_key=idempotency_key, stripe_session_id=stripe_session_id,
                  paid_at=now if paid else None)
    item = OrderItem(order=order, ticket_type_id=ticket_type.id, hold_id=hold.id, quantity=hold.quantity,
                     unit_price_cents=ticket_type.price_cents)
    db.session.add_all([order, item])
    for _ in range(hold.quantity):
        db.session.add(Ticket(code=_ticket_code(), order=order, order_item=item, ticket_type_id=ticket_type.id,
                              event_id=hold.event_id, holder_user_id=user.id))
    try:
        db.session.flush()
    except IntegrityError:
        # This key already names an order for another hold: undo everything (the
        # caller rolls back), or the counters would move without an order.
        raise DomainError("This order was already placed. Check your tickets.", 409) from None
    if paid:
        grant_order_access(order)
    return order


def grant_order_access(order):
    """Each ticket's rooms for the buyer; an upgrade ticket also the backstage queue."""
    for item in order.items:
        ticket_type = item.ticket_type
        role_id = UPGRADE_ROLE if ticket_type.is_upgrade else ATTENDEE_ROLE
        rooms = ticket_type.rooms or [None]
        for room in rooms:
            grant_role(order.event, role_id, user=order.user, room_id=room.id if room else None,
                       source=GrantSource.TICKET, source_ref=order.id)


# Card payment (Stripe Checkout) ----------------------------------------------

# Stripe refuses a Checkout Session that ends less than 30 minutes after it is
# created; the extra minute covers our clock and Stripe's disagreeing.
CARD_PAYMENT_MINUTES = 31
# The completed webhook can land shortly after the session ends: the seats wait for it.
WEBHOOK_GRACE = timedelta(minutes=5)


def card_payment_key(hold):
    """The order's idempotency key for a card payment: one hold, at most one order."""
    return f"stripe-{hold.id}"


def extend_hold(hold_id, until, now=None):
    """Keep an active hold that is not yet due until `until`. Returns True when it was extended."""
    now = now or utcnow()
    return bool(db.session.execute(
        update(Hold).where(Hold.id == hold_id, Hold.status == HoldStatus.ACTIVE, Hold.expires_at > now)
        .values(expires_at=until)
        .execution_options(synchronize_session=False)).rowcount)


def start_card_payment(user, hold_id, success_url, cancel_url, now=None):
    """Open the hold's Stripe Checkout session and keep the seats for as long as it is open.

    Every parameter derives from the hold (the session ends a fixed time after the
    hold began), so a second click repeats the same request under the same
    Idempotency-Key and Stripe hands back the same session: one payment page per
    hold. Returns (hold, session); the caller commits, then reschedules the expiry.
    """
    now = now or utcnow()
    hold = own_hold(user, hold_id)
    ticket_type = hold.ticket_type
    if ticket_type.is_free:
        raise DomainError("This ticket is free: there is nothing to pay.", 422)
    gone = HoldGone("Your reservation has expired and the seats were released. Please choose again.")
    if hold.status != HoldStatus.ACTIVE or hold.expires_at <= now:
        raise gone
    ends_at = hold.created_at + timedelta(
        minutes=current_app.config["HOLD_MINUTES"] + CARD_PAYMENT_MINUTES)
    session = stripe.create_checkout_session(
        name=f"{hold.event.name}: {ticket_type.name}", unit_amount=ticket_type.price_cents,
        currency=ticket_type.currency, quantity=hold.quantity, customer_email=user.email,
        success_url=success_url, cancel_url=cancel_url, expires_at=ends_at,
        metadata={"hold_id": hold.id, "user_id": user.id, "idempotency_key": card_payment_key(hold)},
        idempotency_key=f"eventuall-checkout-{hold.id}")
    # The seats must outlast the payment page, or a buyer could pay for seats just released.
    if not extend_hold(hold.id, session.expires_at + WEBHOOK_GRACE, now):
        raise gone  # it ran out while Stripe answered; the unused session simply expires
    return hold, session


def complete_card_payment(session, now=None):
    """checkout.session.completed: the paid session's hold becomes a paid order, once.

    `session` is Stripe's checkout.session as plain data. Returns (order, created);
    order is None when the session is not ours to fulfil. Replays of the event, or
    other events for the same session, find the order already there.
    """
    now = now or utcnow()
    metadata = session.get("metadata") or {}
    session_id, hold_id = session.get("id"), metadata.get("hold_id")
    if session.get("payment_status") != "paid" or not session_id or not hold_id:
        return None, False  # not paid yet (a delayed method), or not a session we opened
    existing = db.session.scalar(select(Order).where(Order.stripe_session_id == session_id))
    if existing:
        return existing, False
    hold = db.session.get(Hold, hold_id)
    user = db.session.get(User, hold.user_id) if hold else None
    if user is None or user.id != metadata.get("user_id"):
        log.warning("Stripe session %s paid %s %s for hold %s, which no longer exists: refund it in Stripe",
                    session_id, session.get("amount_total"), session.get("currency"), hold_id)
        return None, False
    key = card_payment_key(hold)
    existing = find_order_by_key(user, key)
    if existing:
        return existing, False
    try:
        order = confirm_hold(user, hold.id, key, PaymentMethod.STRIPE, now, stripe_session_id=session_id)
    except HoldGone:
        return _late_card_payment(user, hold, key, session, now), True
    # A twin delivery that won the race made the order confirm_hold hands back: not ours to announce.
    return order, order.paid_at == now


def _late_card_payment(user, hold, key, session, now):
    """A payment that landed after its hold ended. The buyer has paid, so it is never dropped:
    the seats are taken again when the event still has them, else the payment is recorded
    as a cancelled order (to refund) and logged, and Stripe is told to stop retrying."""
    expire_hold(hold.id, now)  # due but not yet swept: give its seats back first
    db.session.refresh(hold)
    event = hold.event
    if (hold.status in (HoldStatus.EXPIRED, HoldStatus.RELEASED)
            and event.status == EventStatus.ACTIVE and event.ends_at > now):
        taken = db.session.execute(
            update(TicketType)
            .where(TicketType.id == hold.ticket_type_id,
                   TicketType.sold + TicketType.held + hold.quantity <= TicketType.capacity)
            .values(sold=TicketType.sold + hold.quantity)
            .execution_options(synchronize_session=False)).rowcount
        if taken:
            claimed = db.session.execute(
                update(Hold).where(Hold.id == hold.id,
                                   Hold.status.in_([HoldStatus.EXPIRED, HoldStatus.RELEASED]))
                .values(status=HoldStatus.CONFIRMED, ended_at=now)
                .execution_options(synchronize_session=False)).rowcount
            if not claimed:
                # A twin delivery is recording this payment right now: roll back, Stripe retries.
                raise DomainError("This payment is already being recorded.", 409)
            log.info("Stripe session %s was paid after hold %s ended; its seats were still free",
                     session["id"], hold.id)
            return _issue_order(user, hold, PaymentMethod.STRIPE, key, session["id"], now)
    order = Order(number=_order_number(), event_id=hold.event_id, user_id=user.id, retailer=Retailer.DIRECT,
                  status=OrderStatus.CANCELLED, payment_method=PaymentMethod.STRIPE,
                  total_cents=max(int(session.get("amount_total") or 0), 0),
                  currency=(session.get("currency") or hold.ticket_type.currency).upper()[:3],
                  buyer_email=user.email, buyer_name=user.name or user.display_name, idempotency_key=key,
                  stripe_session_id=session["id"], paid_at=now, cancelled_at=now)
    db.session.add(order)
    try:
        db.session.flush()
    except IntegrityError:
        raise DomainError("This payment is already being recorded.", 409) from None
    log.warning("Stripe session %s paid %s %s after hold %s ended (%s) and its seats are gone: "
                "recorded as cancelled order %s; refund it in Stripe",
                session["id"], order.total_cents, order.currency, hold.id, hold.status, order.number)
    return order


def end_card_payment(session, now=None):
    """checkout.session.expired: the buyer can no longer pay, so the seats go back (once)."""
    hold_id = (session.get("metadata") or {}).get("hold_id")
    return bool(hold_id) and release_hold(hold_id, HoldStatus.EXPIRED, now)


def card_payment_order(user, hold):
    """The order a card payment for this hold made, paid or (late, seats gone) cancelled."""
    return find_order_by_key(user, card_payment_key(hold))


def mark_paid(order, by_user, now=None):
    now = now or utcnow()
    changed = db.session.execute(
        update(Order).where(Order.id == order.id, Order.status == OrderStatus.PENDING)
        .values(status=OrderStatus.PAID, paid_at=now, marked_paid_by_id=by_user.id)
        .execution_options(synchronize_session=False)).rowcount
    if not changed:
        raise DomainError("This order is not waiting for payment.", 409)
    db.session.refresh(order)
    grant_order_access(order)
    return order


def check_in(event, raw_code, by_user, now=None):
    """Admit a ticket once. Returns the ticket; a second scan raises with the first one's time."""
    now = now or utcnow()
    code = (raw_code or "").strip()
    if not code or len(code) > 64:
        raise DomainError("Type or scan a ticket code.", 422)
    ticket = db.session.scalar(select(Ticket).where(Ticket.code == code, Ticket.event_id == event.id))
    if ticket is None:
        raise DomainError("No ticket of this event has that code.", 404)
    if ticket.status == TicketStatus.VOID:
        raise DomainError("This ticket was cancelled.", 409)
    admitted = db.session.execute(
        update(Ticket).where(Ticket.id == ticket.id, Ticket.checked_in_at.is_(None))
        .values(checked_in_at=now, checked_in_by_id=by_user.id)
        .execution_options(synchronize_session=False)).rowcount
    db.session.refresh(ticket)
    if not admitted:
        raise AlreadyCheckedIn(ticket)
    return ticket


class AlreadyCheckedIn(DomainError):
    status = 409

    def __init__(self, ticket):
        by = ticket.checked_in_by.label if ticket.checked_in_by else "someone"
        # Door staff read their own clock: the event's time zone, named, not UTC.
        zone = ticket.event.timezone
        when = ticket.checked_in_at.astimezone(ZoneInfo(zone))
        super().__init__(f"Already checked in at {when:%H:%M:%S} ({zone}) on {when:%d %b} by {by}.")
        self.ticket = ticket
