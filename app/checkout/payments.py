"""Online payment (Stripe Checkout) and its webhook."""
import logging

from flask import jsonify, request, url_for
from flask_login import current_user, login_required

from app.checkout import bp, services
from app.checkout.jobs import schedule_hold_expiry
from app.checkout.routes import _send_confirmation
from app.errors import DomainError, NotFound
from app.extensions import csrf, db
from app.htmx import redirect_to, render_page
from app.integrations import stripe
from app.models import HoldStatus, OrderStatus

log = logging.getLogger(__name__)


@bp.context_processor
def card_payment():
    return {"card_payment_enabled": stripe.is_enabled()}


@bp.post("/checkout/<hold_id>/pay")
@login_required
def pay(hold_id):
    if not stripe.is_enabled():
        raise NotFound("Card payment is not available.")
    hold, session = services.start_card_payment(
        current_user, hold_id,
        success_url=url_for("checkout.paid", hold_id=hold_id, _external=True),
        cancel_url=url_for("checkout.show", hold_id=hold_id, _external=True))
    db.session.commit()
    schedule_hold_expiry(hold)  # same job id: the expiry moves to the extended time
    # For htmx an HX-Redirect navigation: a form submission redirected off-site would
    # meet the CSP's form-action 'self'.
    return redirect_to(session.url)


@bp.get("/checkout/<hold_id>/paid")
@login_required
def paid(hold_id):
    """Where Stripe sends the buyer back: waits (polling) for the webhook to make the order."""
    hold = services.own_hold(current_user, hold_id)
    order = services.card_payment_order(current_user, hold)
    if order:
        return redirect_to(url_for("checkout.order", order_id=order.id))
    return render_page("checkout/paying.html", "checkout/_paying.html",
                       hold=hold, waiting=hold.status == HoldStatus.ACTIVE)


def _session_completed(session):
    order, created = services.complete_card_payment(session)
    db.session.commit()
    if created and order.status == OrderStatus.PAID:
        _send_confirmation(order)


def _session_expired(session):
    services.end_card_payment(session)
    db.session.commit()


WEBHOOK_HANDLERS = {
    "checkout.session.completed": _session_completed,
    # Delayed methods (bank debits) complete unpaid and are paid by this later event.
    "checkout.session.async_payment_succeeded": _session_completed,
    "checkout.session.expired": _session_expired,
}


@bp.post("/webhooks/stripe")
@csrf.exempt  # Stripe cannot send our CSRF token; its signature stands in for it
def stripe_webhook():
    if not stripe.is_enabled():
        return jsonify(error="Stripe is not configured."), 404
    try:
        event = stripe.construct_event(request.get_data(), request.headers.get("Stripe-Signature"))
    except stripe.InvalidWebhook as exc:
        log.info("Stripe webhook refused: %s", exc.message)
        return jsonify(error=exc.message), exc.status
    handler = WEBHOOK_HANDLERS.get(event.type)
    if handler is None:
        return jsonify(received=True, ignored=event.type)
    try:
        handler(event.object)
    except DomainError as exc:
        db.session.rollback()
        return jsonify(error=exc.message), exc.status
    return jsonify(received=True)
