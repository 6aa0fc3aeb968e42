"""Sign-in rules: one-time codes, finding or creating the user, Google identities.

Services flush and never commit; the route commits once.
"""
import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from app.access.services import merge_pending_profiles
from app.accounts.services import create_personal_account
from app.errors import DomainError
from app.extensions import db
from app.integrations import sms
from app.models import CodeChannel, LoginCode, SignInEvent, User, UserProvider
from app.models.base import utcnow

PHONE_RE = re.compile(r"^\+[1-9]\d{7,14}$")
CODE_RE = re.compile(r"^\d{6}$")
WRONG_CODE = "That code is not right. Check the message and try again."
EXPIRED_CODE = "This code has expired or was already used. Ask for a new one."
TOO_MANY_TRIES = "Too many wrong tries for this code. Ask for a new one."


class SignInError(DomainError):
    status = 400


# Built once: Flask-Login loads the user on every signed-in request.
_USER_BY_ID = select(User).where(User.id == bindparam("user_id"))


def load_user(user_id):
    """Flask-Login's user loader: the signed-in user, or None once they are gone."""
    return db.session.scalars(_USER_BY_ID, {"user_id": user_id}).one_or_none()


def normalize_email(raw):
    raw = (raw or "").strip()
    if not raw:
        raise SignInError("Enter your e-mail address.", 422)
    if len(raw) > 254:
        raise SignInError("That e-mail address is too long.", 422)
    try:
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise SignInError("That does not look like an e-mail address.", 422) from None


def normalize_phone(raw):
    """E.164: a plus, the country code and the number, spaces and dashes ignored."""
    digits = re.sub(r"[\s().-]", "", raw or "")
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits:
        raise SignInError("Enter your mobile number.", 422)
    if not PHONE_RE.match(digits):
        raise SignInError("Enter the number with its country code, like +44 7700 900123.", 422)
    return digits


def _code_digest(code_id, code):
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{code_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _retire_open_codes(channel, destination):
    """A new code replaces older ones, so only the latest can be guessed at."""
    db.session.execute(
        update(LoginCode)
        .where(LoginCode.channel == channel, LoginCode.destination == destination,
               LoginCode.consumed_at.is_(None))
        .values(consumed_at=utcnow()))


def issue_email_code(email):
    """Create a code for this address. Returns the plain code for the e-mail job."""
    _retire_open_codes(CodeChannel.EMAIL, email)
    code = f"{secrets.randbelow(10**6):06d}"
    login_code = LoginCode(channel=CodeChannel.EMAIL, destination=email,
                           expires_at=utcnow() + timedelta(seconds=current_app.config["LOGIN_CODE_TTL_SECONDS"]))
    db.session.add(login_code)
    db.session.flush()
    login_code.code_hash = _code_digest(login_code.id, code)
    return code


def issue_sms_code(phone):
    """Ask the SMS provider to send a code; our row tracks expiry and tries.

    The provider is called before any write, so a slow provider never holds a
    database lock (on SQLite, the one writer lock).
    """
    try:
        sms.start_verification(phone)
    except sms.NumberRejected as exc:
        raise SignInError(str(exc), 422) from None
    except sms.SmsError as exc:
        raise SignInError(str(exc), 503) from None
    _retire_open_codes(CodeChannel.SMS, phone)
    db.session.add(LoginCode(channel=CodeChannel.SMS, destination=phone,
                             expires_at=utcnow() + timedelta(seconds=current_app.config["LOGIN_CODE_TTL_SECONDS"])))
    db.session.flush()


def check_code(channel, destination, code):
    """Spend one try on the latest code for this destination; raise unless it is right.

    The try is counted by a conditional UPDATE, so parallel guesses cannot exceed
    the limit. The caller commits even when this raises, so a wrong guess stays
    counted.
    """
    code = (code or "").strip().replace(" ", "")
    if not CODE_RE.match(code):
        raise SignInError("Enter the 6 digits from the message.", 422)
    login_code = db.session.scalar(
        select(LoginCode)
        .where(LoginCode.channel == channel, LoginCode.destination == destination)
        .order_by(LoginCode.created_at.desc()).limit(1))
    now = utcnow()
    if login_code is None or login_code.consumed_at is not None or login_code.expires_at <= now:
        raise SignInError(EXPIRED_CODE, 400)
    max_attempts = current_app.config["LOGIN_CODE_MAX_ATTEMPTS"]
    counted = db.session.execute(
        update(LoginCode)
        .where(LoginCode.id == login_code.id, LoginCode.consumed_at.is_(None),
               LoginCode.attempts < max_attempts)
        .values(attempts=LoginCode.attempts + 1)
        .execution_options(synchronize_session=False)).rowcount
    if not counted:
        db.session.refresh(login_code)  # a parallel request spent it, or used the last try
        raise SignInError(EXPIRED_CODE if login_code.consumed_at else TOO_MANY_TRIES,
                          400 if login_code.consumed_at else 429)
    if channel == CodeChannel.EMAIL:
        right = hmac.compare_digest(login_code.code_hash or "", _code_digest(login_code.id, code))
    else:
        try:
            right = sms.check_verification(destination, code)
        except sms.SmsError as exc:
            raise SignInError(str(exc), 503) from None
    if not right:
        raise SignInError(WRONG_CODE, 400)
    # Spend the code; a replay racing this one finds consumed_at set and loses.
    spent = db.session.execute(
        update(LoginCode)
        .where(LoginCode.id == login_code.id, LoginCode.consumed_at.is_(None))
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if not spent:
        raise SignInError(EXPIRED_CODE, 400)


def find_or_create_user(email=None, phone=None, name=None):
    """The user with this address, created (with a personal account) on first sign-in."""
    column, value = (User.email, email) if email else (User.phone, phone)
    user = db.session.scalar(select(User).where(column == value))
    if user is not None:
        return user
    try:
        with db.session.begin_nested():
            user = User(email=email, phone=phone, name=name)
            db.session.add(user)
            db.session.flush()
    except IntegrityError:
        # A parallel first sign-in created the same user: use theirs.
        return db.session.scalar(select(User).where(column == value))
    return user


def complete_sign_in(user):
    """First sign-in gets a personal account and whatever was waiting for this
    e-mail or phone (pending profiles: invitations, imported orders)."""
    merge_pending_profiles(user)
    if user.current_account_id is None:
        account = create_personal_account(user)
        user.current_account = account
    user.last_sign_in_at = utcnow()
    db.session.flush()
    return user


def user_for_google(claims):
    """Find the user for a Google identity, linking by verified e-mail, or create one."""
    link = db.session.scalar(select(UserProvider).where(
        UserProvider.provider == "google", UserProvider.subject == claims["sub"]))
    if link is not None:
        return link.user
    email = None
    if claims.get("email") and claims.get("email_verified"):
        email = normalize_email(claims["email"])
    if email:
        user = find_or_create_user(email=email, name=claims.get("name"))
    else:
        user = User(name=claims.get("name"))
        db.session.add(user)
    db.session.add(UserProvider(user=user, provider="google", subject=claims["sub"], email=email))
    db.session.flush()
    return user


def record_sign_in(user_id, method, ip_address, user_agent):
    """Log to the live database; called after the sign-in itself committed."""
    db.session.add(SignInEvent(user_id=user_id, method=method, ip_address=ip_address,
                               user_agent=(user_agent or "")[:300] or None))


def recent_sign_ins(user_id, limit=10):
    return db.session.scalars(
        select(SignInEvent).where(SignInEvent.user_id == user_id)
        .order_by(SignInEvent.created_at.desc()).limit(limit)).all()


def mask_destination(destination):
    """a•••@example.com / +44•••••0123: enough to recognise, not to harvest."""
    if "@" in destination:
        local, _, domain = destination.partition("@")
        return f"{local[:1]}•••@{domain}"
    return f"{destination[:3]}•••••{destination[-4:]}"
