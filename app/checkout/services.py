"""Selling seats: holds that expire, orders, tickets, check-in.

Capacity is guarded in the database, not in Python: every change to a ticket
type's counters is a single conditional UPDATE (`sold + held + n <= capacity`),
and a CHECK constraint refuses any row that would break it. Hold transitions are
conditional on the hold's current status, so a hold is released or confirmed at
most once, whatever runs at the same time (an expiry job, the sweep, the buyer).
"""
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.access.services import grant_role
from app.errors import DomainError, NotFound
from app.extensions import db
from app.models import (EventStatus, GrantSource, Hold, HoldStatus, Order, OrderItem, OrderStatus,
                        PaymentMethod, Retailer, Ticket, TicketStatus, TicketType)
from app.models.base import utcnow

ORDER_NUMBER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I to misread at the door
ATTENDEE_ROLE = "attendee"
UPGRADE_ROLE = "vip"  # attendee + a place in the backstage queue


class SoldOut(DomainError):
    status = 409


class HoldGone(DomainError):
    status = 410


def _parse_quantity(raw, ticket_type):
    try:
        quantity = int(raw)
    except (TypeError, ValueError):
        raise DomainError("Choose how many tickets you want.", 422) from None
    if quantity < 1:
        raise DomainError("Choose at least one ticket.", 422)
    if quantity > ticket_type.max_per_order:
        raise DomainError(f"You can take at most {ticket_type.max_per_order} of these per order.", 422)
    return quantity


def check_on_sale(ticket_type, now):
    event = ticket_type.event
    if event.status != EventStatus.ACTIVE or event.ends_at <= now:
        raise DomainError("This event is not selling tickets.", 409)
    if ticket_type.sales_starts_at and now < ticket_type.sales_starts_at:
        raise DomainError("Sales for this ticket have not started yet.", 409)
    if ticket_type.sales_ends_at and now >= ticket_type.sales_ends_at:
        raise DomainError("Sales for this ticket have ended.", 409)


def hold_seats(user, ticket_type_id, raw_quantity, now=None):
    """Reserve seats for HOLD_MINUTES. Replaces the buyer's earlier hold on the same type."""
    now = now or utcnow()
    ticket_type = db.session.get(TicketType, ticket_type_id)
    if ticket_type is None:
        raise NotFound("There is no such ticket.")
    quantity = _parse_quantity(raw_quantity, ticket_type)
    check_on_sale(ticket_type, now)
    for earlier in db.session.scalars(select(Hold.id).where(
            Hold.user_id == user.id, Hold.ticket_type_id == ticket_type.id, Hold.status == HoldStatus.ACTIVE)):
        release_hold(earlier, HoldStatus.RELEASED, now)
    taken = db.session.execute(
        update(TicketType)
        .where(TicketType.id == ticket_type.id,
               TicketType.sold + TicketType.held + quantity <= TicketType.capacity)
        .values(held=TicketType.held + quantity)
        .execution_options(synchronize_session=False)).rowcount
    if not taken:
        db.session.refresh(ticket_type)
        left = ticket_type.available
        raise SoldOut("Sold out." if left == 0 else f"Only {left} left: choose fewer tickets.")
    hold = Hold(ticket_type_id=ticket_type.id, event_id=ticket_type.event_id, user_id=user.id,
                quantity=quantity, expires_at=now + timedelta(minutes=current_app.config["HOLD_MINUTES"]))
    db.session.add(hold)
    db.session.flush()
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
    """The scheduled job's work: expire the hold if it is still active and due."""
    return release_hold(hold_id, HoldStatus.EXPIRED, now, only_if_due=True)


def expire_due_holds(now=None, batch=500):
    """The sweep: expire every active hold past its time. Returns how many."""
    now = now or utcnow()
    due = db.session.scalars(select(Hold.id).where(
        Hold.status == HoldStatus.ACTIVE, Hold.expires_at <= now).limit(batch)).all()
    return sum(expire_hold(hold_id, now) for hold_id in due)


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
        super().__init__(f"Already checked in at {ticket.checked_in_at:%H:%M:%S} UTC on "
                         f"{ticket.checked_in_at:%d %b} by {by}.")
        self.ticket = ticket
