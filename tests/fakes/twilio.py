"""A fake Twilio Verify v2 API on 127.0.0.1, spoken to by the real twilio SDK.

It answers the two calls sign-in makes, in Twilio's wire format:
POST /v2/Services/{ServiceSid}/Verifications and .../VerificationCheck
(form-encoded, HTTP Basic auth with the account SID and auth token). Each
"sent" code can be read back with code_for(phone), as if off the phone.
"""
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from werkzeug.wrappers import Request, Response

from tests.fakes.server import LocalServer

PATH_RE = re.compile(r"^/v2/Services/(?P<service>[^/]+)/(?P<action>Verifications|VerificationCheck)$")
E164_RE = re.compile(r"^\+[1-9]\d{7,14}$")
MAX_CHECKS = 5  # Verify's default: the 6th check of one verification gets 60202


@dataclass
class Recorded:
    path: str
    form: dict
    auth_user: str | None


@dataclass
class Verification:
    sid: str
    to: str
    code: str
    status: str = "pending"
    checks: int = 0
    created: str = field(default_factory=lambda: _now())


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sid(prefix):
    return prefix + secrets.token_hex(16)


def _error(status, code, message):
    """Twilio's (pre-RFC 9457) error body, which the SDK turns into TwilioRestException."""
    body = {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    return Response(json.dumps(body), status, mimetype="application/json")


class FakeTwilioVerify:
    def __init__(self, account_sid, auth_token, service_sid):
        self.account_sid, self.auth_token, self.service_sid = account_sid, auth_token, service_sid
        self.requests = []
        self.invalid_numbers = set()
        self.down = False  # answer every call with a 500, as during an outage
        self._verifications = {}  # phone -> its latest Verification
        self._lock = threading.Lock()
        self._http = LocalServer(self._wsgi)
        self.base_url = self._http.url

    def start(self):
        self._http.start()
        return self

    def stop(self):
        self._http.stop()

    def reset(self):
        with self._lock:
            self.requests.clear()
            self.invalid_numbers.clear()
            self._verifications.clear()
            self.down = False

    # What the test reads ---------------------------------------------------

    def code_for(self, phone):
        """The code the latest verification texted to this number."""
        with self._lock:
            return self._verifications[phone].code

    def calls(self, action):
        """Recorded requests to one endpoint: "Verifications" or "VerificationCheck"."""
        return [r for r in self.requests if r.path.endswith("/" + action)]

    def expire(self, phone):
        with self._lock:
            self._verifications[phone].status = "expired"

    # The API ---------------------------------------------------------------

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        auth = request.authorization
        with self._lock:
            self.requests.append(Recorded(request.path, request.form.to_dict(),
                                          auth.username if auth else None))
            response = self._answer(request, auth)
        return response(environ, start_response)

    def _answer(self, request, auth):
        if (auth is None or auth.type != "basic" or auth.username != self.account_sid
                or auth.password != self.auth_token):
            response = _error(401, 20003, "Authenticate")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response
        if self.down:
            return _error(500, 20500, "Internal Server Error")
        match = PATH_RE.match(request.path)
        if request.method != "POST" or not match or match["service"] != self.service_sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        if match["action"] == "Verifications":
            return self._start(request)
        return self._check(request)

    def _resource(self, verification, channel="sms"):
        return {
            "sid": verification.sid, "service_sid": self.service_sid,
            "account_sid": self.account_sid, "to": verification.to, "channel": channel,
            "status": verification.status, "valid": verification.status == "approved",
            "amount": None, "payee": None,
            "date_created": verification.created, "date_updated": _now(),
        }

    def _start(self, request):
        to, channel = request.form.get("To", ""), request.form.get("Channel", "")
        if not to:
            return _error(400, 60200, "Invalid parameter `To`")
        if not E164_RE.match(to) or to in self.invalid_numbers:
            return _error(400, 60200, f"Invalid parameter `To`: {to}")
        if channel not in {"sms", "call", "email", "whatsapp", "sna"}:
            return _error(400, 60200, "Invalid parameter: Channel")
        verification = self._verifications.get(to)
        # Like Verify, a number with a pending verification is sent the same code again.
        if verification is None or verification.status != "pending":
            verification = Verification(_sid("VE"), to, f"{secrets.randbelow(10**6):06d}")
            self._verifications[to] = verification
        body = self._resource(verification, channel)
        body.update(
            lookup={"carrier": None},
            send_code_attempts=[{"attempt_sid": _sid("VL"), "channel": channel, "time": _now()}],
            sna=None,
            url=f"{self.base_url}/v2/Services/{self.service_sid}/Verifications/{verification.sid}")
        return Response(json.dumps(body), 201, mimetype="application/json")

    def _check(self, request):
        to, code = request.form.get("To", ""), request.form.get("Code", "")
        verification = self._verifications.get(to)
        # Approved, expired or never started: Verify no longer knows the verification.
        if verification is None or verification.status != "pending":
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        if verification.checks >= MAX_CHECKS:
            return _error(429, 60202, "Max check attempts reached")
        verification.checks += 1
        if secrets.compare_digest(code, verification.code):
            verification.status = "approved"
        body = self._resource(verification)
        body["sna_attempts_error_codes"] = []
        return Response(json.dumps(body), 200, mimetype="application/json")
