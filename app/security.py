"""Security headers on every response."""
from urllib.parse import urlsplit

from flask import abort, request


def content_security_policy(app):
    """Only what we serve ourselves, plus the LiveKit server for media sockets and,
    with Stripe, its checkout page (a form redirected there must be allowed)."""
    form_action = "form-action 'self' https://checkout.stripe.com" if app.config.get(
        "STRIPE_SECRET_KEY") else "form-action 'self'"
    connect = ["'self'"]
    livekit = app.config.get("LIVEKIT_URL")
    if livekit:
        parts = urlsplit(livekit)
        connect.append(f"{parts.scheme}://{parts.netloc}")
        connect.append(f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}")
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        f"connect-src {' '.join(connect)}",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        form_action,
        "frame-ancestors 'none'",
    ])


def has_nul_byte(request):
    """NUL can come in through a URL or a form; PostgreSQL refuses it in any text."""
    values = [request.path, *request.args.values()]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values.extend(request.form.values())
    return any("\x00" in value for value in values)


def register(app):
    csp = content_security_policy(app)

    @app.before_request
    def refuse_nul_bytes():
        if has_nul_byte(request):
            abort(400, "Text cannot contain NUL characters.")

    @app.after_request
    def set_security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", csp)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
        if app.config["HSTS"]:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
