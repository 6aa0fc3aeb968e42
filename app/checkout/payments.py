"""Online payment (Stripe Checkout) and its webhook."""
from app.checkout import bp  # noqa: F401
