"""Buying tickets: hold seats, confirm (free, pay later, Stripe), see the order."""
import secrets

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.checkout import bp, services, waitlist
from app.checkout.jobs import notify_waitlist_offers, schedule_hold_expiry
from app.errors import DomainError, NotFound
from app.extensions import db
from app.htmx import redirect_to, render_page
from app.jobs.email import queue_email
from app.models import HoldStatus, Order, PaymentMethod, WaitlistStatus
from app.models.base import utcnow

@bp.post("/checkout/hold")
@login_required
def hold():
    try:
        hold = services.hold_seats(current_user, request.form.get("ticket_type_id"), request.form.get("quantity"))
    except services.SoldOut as sold_out:  # said where the buyer clicked, with the waitlist when none is left
        db.session.rollback()
        return render_page("checkout/hold_refused.html", "checkout/_hold_refused.html", status=409,
                           sold_out=sold_out)
    db.session.commit()
    schedule_hold_expiry(hold)
    return redirect_to(url_for("checkout.show", hold_id=hold.id))


@bp.get("/checkout/<hold_id>")
@login_required
def show(hold_id):
    hold = services.own_hold(current_user, hold_id)
    if hold.status == HoldStatus.CONFIRMED:
        order = db.session.query(Order).join(Order.items).filter_by(hold_id=hold.id).first()
        if order:
            return redirect(url_for("checkout.order", order_id=order.id))
    seconds_left = max(int((hold.expires_at - utcnow()).total_seconds()), 0)
    return render_template("checkout/show.html", hold=hold, ticket_type=hold.ticket_type, event=hold.event,
                           seconds_left=seconds_left, active=hold.status == HoldStatus.ACTIVE and seconds_left > 0,
                           idempotency_key=secrets.token_urlsafe(16))


@bp.post("/checkout/<hold_id>/confirm")
@login_required
def confirm(hold_id):
    method = request.form.get("payment_method")
    if method not in (PaymentMethod.FREE, PaymentMethod.PAY_LATER):
        raise DomainError("Choose how you want to pay.", 422)
    key = (request.form.get("idempotency_key") or "")[:64] or None
    order = services.confirm_hold(current_user, hold_id, key, method)
    db.session.commit()
    _send_confirmation(order)
    return redirect_to(url_for("checkout.order", order_id=order.id))


def _send_confirmation(order):
    """After the commit. The mail links each ticket's page; the codes themselves stay
    out of the mail (and so out of the job's arguments in Redis and the logs)."""
    if not order.buyer_email:
        return
    order_link = url_for("checkout.order", order_id=order.id, _external=True)
    ticket_lines = "".join(
        f"- {ticket.ticket_type.name}: {url_for('tickets.detail', ticket_id=ticket.id, _external=True)}\n"
        for ticket in order.tickets)
    queue_email(order.buyer_email, f"Your tickets for {order.event.name} ({order.number})",
                f"Order {order.number}: {len(order.tickets)} ticket(s) for {order.event.name}.\n\n"
                f"Your tickets, each with its QR code, PDF and calendar file:\n{ticket_lines}\n"
                f"The whole order: {order_link}\n")


@bp.post("/checkout/<hold_id>/release")
@login_required
def release(hold_id):
    hold = services.own_hold(current_user, hold_id)
    if services.release_hold(hold.id):
        waitlist.promote_waitlist(hold.ticket_type_id)  # before the commit: nobody jumps the queue
    db.session.commit()
    notify_waitlist_offers()
    flash("Your reservation is cancelled and the seats are released.", "info")
    return redirect_to(url_for("events.detail", event_id=hold.event_id))


@bp.get("/orders/<order_id>")
@login_required
def order(order_id):
    order = db.session.get(Order, order_id)
    if order is None or order.user_id != current_user.id:
        raise NotFound("There is no such order.")
    return render_template("checkout/order.html", order=order)


# Waitlist ---------------------------------------------------------------------

@bp.app_context_processor
def waitlist_helpers():
    """The event page's ticket panel asks, per sold-out ticket type, where the viewer stands."""
    def waitlist_for(ticket_type):
        if not current_user.is_authenticated:
            return None
        return waitlist.waitlist_state(current_user, ticket_type)
    return {"waitlist_for": waitlist_for}


@bp.post("/checkout/waitlist")
@login_required
def join_waitlist():
    entry = waitlist.join_waitlist(current_user, request.form.get("ticket_type_id"), request.form.get("quantity"))
    db.session.commit()
    notify_waitlist_offers()  # seats that came free meanwhile were offered at once
    db.session.refresh(entry)
    if entry.status == WaitlistStatus.OFFERED:
        flash("Seats just came free: they are reserved for you.", "info")
        return redirect_to(url_for("checkout.show", hold_id=entry.hold_id))
    flash(f"You are on the waitlist, number {waitlist.position(entry)} in line. "
          "We will e-mail you when seats come free.", "info")
    return redirect_to(url_for("events.detail", event_id=entry.event_id))


@bp.post("/checkout/waitlist/<entry_id>/leave")
@login_required
def leave_waitlist(entry_id):
    entry = waitlist.leave_waitlist(current_user, entry_id)
    db.session.commit()
    flash("You have left the waitlist.", "info")
    return redirect_to(url_for("events.detail", event_id=entry.event_id))
