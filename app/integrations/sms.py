"""SMS sign-in codes: Twilio Verify when configured, else a console adapter.

Both follow Verify's contract: `start(phone)` sends a code, `check(phone, code)`
says whether it is right. The code itself never reaches our database.
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


class TwilioVerifier:
    def __init__(self, account_sid, auth_token, service_sid, base_url=None):
        from requests import RequestException
        from twilio.base.exceptions import TwilioException
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        self.client = Client(account_sid, auth_token,
                             http_client=TwilioHttpClient(timeout=TWILIO_TIMEOUT_SECONDS))
        if base_url:
            self.client.verify.base_url = base_url
        self.service_sid = service_sid
        # Network failures surface from requests, not as Twilio errors.
        self.errors = (TwilioException, RequestException)

    def _service(self):
        return self.client.verify.v2.services(self.service_sid)

    @staticmethod
    def _describe(exc):
        """Status and Twilio error code for the log; never the message, which echoes input."""
        return getattr(exc, "status", type(exc).__name__), getattr(exc, "code", None)

    def start(self, phone):
        try:
            self._service().verifications.create(to=phone, channel="sms")
        except self.errors as exc:
            # 400 is Twilio judging the number (60200 invalid, 60205 landline, ...);
            # anything else (401, 404 service, 429, 5xx, network) is ours or theirs to fix.
            if getattr(exc, "status", None) == 400:
                log.info("Twilio Verify will not text %s: HTTP %s, error %s", phone, *self._describe(exc))
                raise NumberRejected("We could not send a text message to that number. "
                                     "Check it and try again.") from None
            log.error("Twilio Verify could not send a code: HTTP %s, error %s", *self._describe(exc))
            raise SmsUnavailable("We could not send a text message right now. "
                                 "Please try again in a few minutes.") from None

    def check(self, phone, code):
        try:
            result = self._service().verification_checks.create(to=phone, code=code)
        except self.errors as exc:
            # 404: Verify no longer has the verification (approved, expired, spent);
            # 60202: it took its maximum of checks. Either way this code cannot work.
            if getattr(exc, "status", None) in (400, 404) or getattr(exc, "code", None) == 60202:
                log.info("Twilio Verify check refused for %s: HTTP %s, error %s", phone, *self._describe(exc))
                return False
            log.error("Twilio Verify could not check a code: HTTP %s, error %s", *self._describe(exc))
            raise SmsUnavailable("We could not check your code right now. "
                                 "Please try again in a minute.") from None
        return result.status == "approved"


def init_app(app):
    from app.extensions import redis

    config = app.config
    if config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_VERIFY_SERVICE_SID"):
        verifier = TwilioVerifier(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"],
                                  config["TWILIO_VERIFY_SERVICE_SID"], config.get("TWILIO_API_BASE_URL"))
    else:
        verifier = ConsoleSmsVerifier(redis, config["SECRET_KEY"], config["LOGIN_CODE_TTL_SECONDS"])
    app.extensions["sms_verifier"] = verifier


def start_verification(phone):
    current_app.extensions["sms_verifier"].start(phone)


def check_verification(phone, code):
    return current_app.extensions["sms_verifier"].check(phone, code)
