"""Sign-in by e-mail code, SMS code or Google; sign-out."""
import logging
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy.exc import SQLAlchemyError

from app.auth import services
from app.auth.forms import CodeForm, EmailSignInForm, PhoneSignInForm
from app.errors import DomainError
from app.extensions import db, limiter
from app.htmx import redirect_to, render_page
from app.integrations import google
from app.jobs.email import queue_email
from app.models import CodeChannel

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

PENDING = "pending_sign_in"


def _pending():
    return session.get(PENDING) or {}


def _form_address_key():
    """Rate-limit key for the address typed into the form (normalised when possible)."""
    raw = request.form.get("email") or request.form.get("phone") or ""
    return "address:" + raw.strip().lower().replace(" ", "")


def _pending_address_key():
    return "address:" + _pending().get("destination", "")


def _safe_next(target):
    """Only same-site paths, so a sign-in link cannot bounce users elsewhere."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _config(name):
    return lambda: current_app.config[name]


def _sign_in_page(status=200, email_form=None, phone_form=None, error=None, channel="email"):
    return render_page("auth/login.html", "auth/_sign_in.html", status=status,
                       email_form=email_form or EmailSignInForm(),
                       phone_form=phone_form or PhoneSignInForm(),
                       error=error, channel=channel, google_enabled=google.is_enabled())


@bp.get("/login")
def login():
    if current_user.is_authenticated:
        return redirect(url_for("accounts.dashboard"))
    if _safe_next(request.args.get("next")):
        session["next"] = request.args["next"]
    return _sign_in_page()


@bp.post("/login/email")
@limiter.limit(_config("RATELIMIT_CODE_REQUEST_IP"))
@limiter.limit(_config("RATELIMIT_CODE_REQUEST"), key_func=_form_address_key)
def send_email_code():
    form = EmailSignInForm()
    if not form.validate_on_submit():
        return _sign_in_page(400, email_form=form, error="This form has expired. Please try again.")
    try:
        email = services.normalize_email(form.email.data)
        code = services.issue_email_code(email)
    except DomainError as exc:
        return _sign_in_page(exc.status, email_form=form, error=exc.message)
    db.session.commit()
    queue_email(email, "Your Eventuall sign-in code",
                f"Your sign-in code is {code}\n\nIt works once, for "
                f"{current_app.config['LOGIN_CODE_TTL_SECONDS'] // 60} minutes. "
                "If you did not ask for it, you can ignore this message.")
    session[PENDING] = {"channel": CodeChannel.EMAIL.value, "destination": email}
    return redirect_to(url_for("auth.verify"))


@bp.post("/login/sms")
@limiter.limit(_config("RATELIMIT_CODE_REQUEST_IP"))
@limiter.limit(_config("RATELIMIT_CODE_REQUEST"), key_func=_form_address_key)
def send_sms_code():
    form = PhoneSignInForm()
    if not form.validate_on_submit():
        return _sign_in_page(400, phone_form=form, channel="sms",
                             error="This form has expired. Please try again.")
    try:
        phone = services.normalize_phone(form.phone.data)
        services.issue_sms_code(phone)
    except DomainError as exc:
        db.session.rollback()
        return _sign_in_page(exc.status, phone_form=form, channel="sms", error=exc.message)
    db.session.commit()
    session[PENDING] = {"channel": CodeChannel.SMS.value, "destination": phone}
    return redirect_to(url_for("auth.verify"))


def _verify_page(status=200, form=None, error=None):
    pending = _pending()
    return render_page("auth/verify.html", "auth/_code_form.html", status=status,
                       form=form or CodeForm(), error=error, channel=pending.get("channel"),
                       masked=services.mask_destination(pending["destination"]))


@bp.get("/verify")
def verify():
    if not _pending():
        return redirect(url_for("auth.login"))
    return _verify_page()


@bp.post("/verify")
@limiter.limit(_config("RATELIMIT_CODE_VERIFY_IP"))
@limiter.limit(_config("RATELIMIT_CODE_VERIFY"), key_func=_pending_address_key)
def verify_code():
    pending = _pending()
    if not pending:
        flash("Your sign-in timed out. Please start again.", "warning")
        return redirect_to(url_for("auth.login"))
    form = CodeForm()
    if not form.validate_on_submit():
        return _verify_page(400, form, "This form has expired. Please try again.")
    channel, destination = pending["channel"], pending["destination"]
    try:
        services.check_code(channel, destination, form.code.data)
    except DomainError as exc:
        db.session.commit()  # keep the failed try counted
        return _verify_page(exc.status, form, exc.message)
    if channel == CodeChannel.EMAIL:
        user = services.find_or_create_user(email=destination)
    else:
        user = services.find_or_create_user(phone=destination)
    return _finish_sign_in(user, channel)


def _finish_sign_in(user, method):
    services.complete_sign_in(user)
    db.session.commit()
    try:
        services.record_sign_in(user.id, method, request.remote_addr, request.user_agent.string)
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("could not log a sign-in to the live database", exc_info=True)
    target = _safe_next(session.pop("next", None))
    session.pop(PENDING, None)
    login_user(user, remember=True)
    flash(f"Welcome, {user.label}.", "success")
    return redirect_to(target or url_for("accounts.dashboard"))


@bp.get("/google")
@limiter.limit(_config("RATELIMIT_CODE_REQUEST_IP"))
def google_login():
    if not google.is_enabled():
        raise DomainError("Google sign-in is not set up on this server.", 404)
    try:
        return google.authorize_redirect(url_for("auth.google_callback", _external=True))
    except google.GoogleSignInError as exc:
        flash(str(exc), "error")
        return redirect(url_for("auth.login"))


@bp.get("/google/callback")
def google_callback():
    if not google.is_enabled():
        raise DomainError("Google sign-in is not set up on this server.", 404)
    try:
        claims = google.fetch_identity()
    except google.GoogleSignInError as exc:
        flash(str(exc), "error")
        return redirect(url_for("auth.login"))
    return _finish_sign_in(services.user_for_google(claims), "google")


@bp.post("/logout")
@login_required
def logout():
    session.clear()
    logout_user()  # after clear(): it leaves the marker that deletes the remember-me cookie
    flash("You are signed out.", "info")
    return redirect_to(url_for("auth.login"))
