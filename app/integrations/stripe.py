"""Card payments through Stripe Checkout, and Stripe's signed webhooks.

The only module that imports the stripe SDK. Without STRIPE_SECRET_KEY the app
offers no card payment (is_enabled() is False). STRIPE_API_BASE points the SDK
at a fake server in tests.
"""
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app

from app.errors import DomainError

log = logging.getLogger(__name__)

# The SDK waits 80 s by default; a hung Stripe must not hang the buyer's request with it.
STRIPE_TIMEOUT_SECONDS = 10
# Retries resend the same Idempotency-Key, so Stripe never makes a second session.
STRIPE_RETRIES = 2


class PaymentUnavailable(DomainError):
    """Stripe is unreachable, failing or refusing our credentials: not the buyer's doing."""

    status = 502


class InvalidWebhook(DomainError):
    """A webhook whose signature, timestamp or body we cannot accept."""

    status = 400


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    object: dict  # data.object as plain JSON data, e.g. a checkout.session


class _Stripe:
    def __init__(self, client, webhook_secret):
        self.client, self.webhook_secret = client, webhook_secret


def init_app(app):
    config = app.config
    if not config.get("STRIPE_SECRET_KEY"):
        app.extensions["stripe"] = None
        return
    if not config.get("STRIPE_WEBHOOK_SECRET"):
        # Without it no payment could ever be confirmed: refuse to start half set up.
        raise RuntimeError("STRIPE_WEBHOOK_SECRET must be set together with STRIPE_SECRET_KEY.")
    import stripe

    base = {"api": config["STRIPE_API_BASE"]} if config.get("STRIPE_API_BASE") else None
    client = stripe.StripeClient(config["STRIPE_SECRET_KEY"], base_addresses=base,
                                 max_network_retries=STRIPE_RETRIES,
                                 http_client=stripe.RequestsClient(timeout=STRIPE_TIMEOUT_SECONDS))
    app.extensions["stripe"] = _Stripe(client, config["STRIPE_WEBHOOK_SECRET"])


def is_enabled():
    return current_app.extensions.get("stripe") is not None


def _stripe():
    gateway = current_app.extensions.get("stripe")
    if gateway is None:
        raise PaymentUnavailable("Card payment is not available.", 404)
    return gateway


def create_checkout_session(*, name, unit_amount, currency, quantity, customer_email, success_url,
                            cancel_url, expires_at, metadata, idempotency_key):
    """A hosted payment page for `quantity` x `unit_amount` (smallest currency unit).

    The same idempotency key with the same parameters returns the same session,
    so a buyer who clicks twice is sent to one payment page, never two.
    """
    import stripe

    params = {
        "mode": "payment",
        "line_items": [{"quantity": quantity, "price_data": {
            "currency": currency.lower(), "unit_amount": unit_amount, "product_data": {"name": name}}}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "expires_at": int(expires_at.timestamp()),
        "client_reference_id": metadata.get("hold_id"),
        "metadata": metadata,
    }
    if customer_email:
        params["customer_email"] = customer_email
    try:
        session = _stripe().client.v1.checkout.sessions.create(
            params, {"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        # Type, status and code only: Stripe's messages can quote (a masked form of) our key.
        log.error("Stripe could not create a Checkout Session: %s, HTTP %s, code %s, request %s",
                  type(exc).__name__, exc.http_status, exc.code, exc.request_id)
        raise PaymentUnavailable("We could not start the card payment right now. "
                                 "Please try again in a minute.") from None
    return CheckoutSession(session.id, session.url, datetime.fromtimestamp(session.expires_at, UTC))


def construct_event(payload, signature_header):
    """Verify Stripe-Signature (HMAC-SHA256 over "t.payload", 300 s tolerance) and parse the event."""
    import stripe

    gateway = _stripe()
    if not signature_header:
        raise InvalidWebhook("Missing Stripe-Signature header.")
    try:
        event = gateway.client.construct_event(payload, signature_header, gateway.webhook_secret)
        return WebhookEvent(event.id, event.type, event.data.object.to_dict())
    except stripe.SignatureVerificationError:
        raise InvalidWebhook("Invalid or expired Stripe signature.") from None
    except (ValueError, AttributeError, KeyError, TypeError):
        # Signed but not an event we can read (not JSON, no data.object, ...).
        raise InvalidWebhook("Malformed Stripe event.") from None
