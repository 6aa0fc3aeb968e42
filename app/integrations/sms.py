"""Text messages: sign-in codes (Twilio Verify) and plain texts such as invitation
links (Twilio Messages), each with a console adapter for development.

Verifiers follow Verify's contract: `start(phone)` sends a code, `check(phone, code)`
says whether it is right. The code itself never reaches our database. Texters
have `send(phone, body)`; only the console one writes the body to the log.
"""
import hashlib
import hmac
import logging
import secrets

from flask import current_app

log = logging.getLogger(__name__)

# The SDK waits forever by default; a hung Twilio must not hang sign-in with it.
TWILIO_TIMEOUT_SECONDS = 10


class SmsError(Exception):
    """The SMS provider refused or failed; the message is safe to show."""


class NumberRejected(SmsError):
    """The provider will not text this number: the user should check what they typed."""


class SmsUnavailable(SmsError):
    """The provider is unreachable, failing or refusing our credentials: not the user's doing."""


class ConsoleSmsVerifier:
    """Development stand-in: writes the code to the log, keeps its HMAC in Redis."""

    def __init__(self, redis, secret_key, ttl_seconds):
        self.redis, self.secret, self.ttl = redis, secret_key.encode(), ttl_seconds

    def _key(self, phone):
        return f"sms-code:{phone}"

    def _digest(self, phone, code):
        return hmac.new(self.secret, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()

    def start(self, phone):
        code = f"{secrets.randbelow(10**6):06d}"
        self.redis.set(self._key(phone), self._digest(phone, code), ex=self.ttl)
        log.info("SMS (console adapter) to %s: your Eventuall code is %s", phone, code)

    def check(self, phone, code):
        stored = self.redis.get(self._key(phone))
        if stored is None or not hmac.compare_digest(stored.decode(), self._digest(phone, code)):
            return False
        self.redis.delete(self._key(phone))
        return True


class ConsoleTexter:
    """Development stand-in for Twilio Messages: the text goes to the log."""

    def send(self, phone, body):
        log.info("SMS (console adapter) to %s: %s", phone, body)


def twilio_client(account_sid, auth_token, base_url=None):
    """One SDK client for Verify and Messages; base_url points both at a fake in tests."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=TWILIO_TIMEOUT_SECONDS))
    if base_url:
        client.verify.base_url = base_url
        client.api.base_url = base_url
    return client


def _twilio_errors():
    from requests import RequestException
    from twilio.base.exceptions import TwilioException

    # Network failures surface from requests, not as Twilio errors.
    return TwilioException, RequestException


def _describe(exc):
    """Status and Twilio error code for the log; never the message, which echoes input."""
    return getattr(exc, "status", type(exc).__name__), getattr(exc, "code", None)


class TwilioVerifier:
    def __init__(self, client, service_sid):
        self.client, self.service_sid = client, service_sid
        self.errors = _twilio_errors()

    def _service(self):
        return self.client.verify.v2.services(self.service_sid)

    def start(self, phone):
        try:
            self._service().verifications.create(to=phone, channel="sms")
        except self.errors as exc:
            # 400 is Twilio judging the number (60200 invalid, 60205 landline, ...);
            # anything else (401, 404 service, 429, 5xx, network) is ours or theirs to fix.
            if getattr(exc, "status", None) == 400:
                log.info("Twilio Verify will not text %s: HTTP %s, error %s", phone, *_describe(exc))
                raise NumberRejected("We could not send a text message to that number. "
                                     "Check it and try again.") from None
            log.error("Twilio Verify could not send a code: HTTP %s, error %s", *_describe(exc))
            raise SmsUnavailable("We could not send a text message right now. "
                                 "Please try again in a few minutes.") from None

    def check(self, phone, code):
        try:
            result = self._service().verification_checks.create(to=phone, code=code)
        except self.errors as exc:
            # 404: Verify no longer has the verification (approved, expired, spent);
            # 60202: it took its maximum of checks. Either way this code cannot work.
            if getattr(exc, "status", None) in (400, 404) or getattr(exc, "code", None) == 60202:
                log.info("Twilio Verify check refused for %s: HTTP %s, error %s", phone, *_describe(exc))
                return False
            log.error("Twilio Verify could not check a code: HTTP %s, error %s", *_describe(exc))
            raise SmsUnavailable("We could not check your code right now. "
                                 "Please try again in a minute.") from None
        return result.status == "approved"


class TwilioTexter:
    """Twilio Messages API: a plain text from our number (TWILIO_SMS_FROM)."""

    def __init__(self, client, sender):
        self.client, self.sender = client, sender
        self.errors = _twilio_errors()

    def send(self, phone, body):
        try:
            self.client.messages.create(to=phone, from_=self.sender, body=body)
        except self.errors as exc:
            # The body may hold an invitation link: it stays out of the log and the error.
            if getattr(exc, "status", None) == 400:
                log.info("Twilio Messages will not text %s: HTTP %s, error %s", phone, *_describe(exc))
                raise NumberRejected("We could not send a text message to that number.") from None
            log.error("Twilio Messages could not send a text: HTTP %s, error %s", *_describe(exc))
            raise SmsUnavailable("We could not send a text message right now.") from None


def init_app(app):
    from app.extensions import redis

    config = app.config
    client = None
    if config.get("TWILIO_ACCOUNT_SID"):
        client = twilio_client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"],
                               config.get("TWILIO_API_BASE_URL"))
    if client and config.get("TWILIO_VERIFY_SERVICE_SID"):
        verifier = TwilioVerifier(client, config["TWILIO_VERIFY_SERVICE_SID"])
    else:
        verifier = ConsoleSmsVerifier(redis, config["SECRET_KEY"], config["LOGIN_CODE_TTL_SECONDS"])
    app.extensions["sms_verifier"] = verifier
    app.extensions["sms_texter"] = (TwilioTexter(client, config["TWILIO_SMS_FROM"])
                                    if client and config.get("TWILIO_SMS_FROM") else ConsoleTexter())


def start_verification(phone):
    current_app.extensions["sms_verifier"].start(phone)


def check_verification(phone, code):
    return current_app.extensions["sms_verifier"].check(phone, code)


def send_text(phone, body):
    """Send a text now. Also the RQ job behind queued texts (it runs in an app context)."""
    current_app.extensions["sms_texter"].send(phone, body)
