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


class SmsError(Exception):
    """The SMS provider refused or failed; the message is safe to show."""


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
        from twilio.base.exceptions import TwilioException
        from twilio.rest import Client

        self.client = Client(account_sid, auth_token)
        if base_url:
            self.client.verify.base_url = base_url
        self.service_sid = service_sid
        self.errors = TwilioException

    def _service(self):
        return self.client.verify.v2.services(self.service_sid)

    def start(self, phone):
        try:
            self._service().verifications.create(to=phone, channel="sms")
        except self.errors as exc:
            log.warning("Twilio Verify refused to send to %s: %s", phone, getattr(exc, "code", exc))
            raise SmsError("We could not send a text message to that number.") from None

    def check(self, phone, code):
        try:
            result = self._service().verification_checks.create(to=phone, code=code)
        except self.errors as exc:
            # Verify answers 404 once a verification is approved, expired or spent.
            log.info("Twilio Verify check failed for %s: %s", phone, getattr(exc, "status", exc))
            return False
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
