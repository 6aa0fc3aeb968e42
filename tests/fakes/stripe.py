"""A fake Stripe API on 127.0.0.1, spoken to by the real stripe SDK, and signed webhooks.

It answers the Checkout calls the app makes, in Stripe's wire format:
POST /v1/checkout/sessions (form-encoded with Stripe's bracket notation,
`Authorization: Bearer <secret key>` or Basic with the key as user name) and
GET /v1/checkout/sessions/<id>. Like Stripe, a repeated Idempotency-Key with the
same parameters replays the first answer, and with other parameters is refused.
Every request is recorded. `signed_webhook` builds an event delivery exactly as
Stripe signs it: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
"""
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass

from werkzeug.wrappers import Request, Response

from tests.fakes.server import FakeService

SESSION_PATH_RE = re.compile(r"^/v1/checkout/sessions/(?P<id>[^/]+)$")
KEY_PART_RE = re.compile(r"\[([^\]]*)\]")
MIN_LIFETIME, MAX_LIFETIME = 30 * 60, 24 * 3600  # Stripe's bounds on expires_at, from creation


@dataclass
class Recorded:
    method: str
    path: str
    form: dict            # bracket notation unfolded into dicts and lists
    api_key: str | None   # the key it authenticated with
    idempotency_key: str | None


def unflatten(pairs):
    """Stripe's form encoding: `a[b][0][c]=v` -> {"a": {"b": [{"c": "v"}]}}."""
    root = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head] + KEY_PART_RE.findall(key[len(head):])
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    """Dicts whose keys are 0..n-1 are Stripe's arrays."""
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node) and sorted(map(int, node)) == list(range(len(node))):
        return [node[str(i)] for i in range(len(node))]
    return node


def sign(payload, secret, timestamp=None):
    """The Stripe-Signature header for a body, as Stripe computes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def event(event_type, session, event_id=None):
    """A v1 snapshot event carrying a checkout.session."""
    return {"id": event_id or "evt_" + secrets.token_hex(12), "object": "event", "api_version": "2025-01-27",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": event_type,
            "request": {"id": None, "idempotency_key": None}, "data": {"object": session}}


def signed_webhook(event_body, secret, timestamp=None):
    """(body bytes, headers) of one webhook delivery."""
    payload = json.dumps(event_body).encode()
    return payload, {"Stripe-Signature": sign(payload, secret, timestamp), "Content-Type": "application/json"}


def _error(status, error_type, message, param=None, code=None):
    body = {"error": {"type": error_type, "message": message}}
    if param:
        body["error"]["param"] = param
    if code:
        body["error"]["code"] = code
    return Response(json.dumps(body), status, mimetype="application/json",
                    headers={"Request-Id": "req_" + secrets.token_hex(7)})


def _json(body, status=200, replayed=False):
    headers = {"Request-Id": "req_" + secrets.token_hex(7)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(json.dumps(body), status, mimetype="application/json", headers=headers)


class FakeStripe(FakeService):
    def __init__(self, secret_key):
        self.secret_key = secret_key
        self.requests = []
        self.sessions = {}
        self._idempotent = {}  # key -> (params, response body)
        self._lock = threading.Lock()
        self._serve(self._wsgi)

    def reset(self):
        with self._lock:
            self.requests.clear()
            self.sessions.clear()
            self._idempotent.clear()

    # What the test reads and does (as the buyer on Stripe's page) ----------

    def created(self):
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"]

    def complete(self, session_id):
        """The buyer pays: the session as the completed event carries it."""
        with self._lock:
            session = self.sessions[session_id]
            session.update(status="complete", payment_status="paid",
                           payment_intent="pi_" + secrets.token_hex(12))
            return json.loads(json.dumps(session))

    def expire(self, session_id):
        with self._lock:
            session = self.sessions[session_id]
            session.update(status="expired", url=None)
            return json.loads(json.dumps(session))

    # The API ---------------------------------------------------------------

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        api_key = self._api_key(request)
        with self._lock:
            self.requests.append(Recorded(request.method, request.path, unflatten(request.form.items(multi=True)),
                                          api_key, request.headers.get("Idempotency-Key")))
            response = self._answer(request, api_key)
        return response(environ, start_response)

    @staticmethod
    def _api_key(request):
        auth = request.authorization
        if auth is None:
            return None
        if auth.type == "bearer":
            return auth.token
        return auth.username if auth.type == "basic" else None

    def _answer(self, request, api_key):
        if api_key != self.secret_key:
            shown = f"{api_key[:8]}****{api_key[-4:]}" if api_key else "none"
            return _error(401, "invalid_request_error", f"Invalid API Key provided: {shown}")
        if request.method == "POST" and request.path == "/v1/checkout/sessions":
            return self._create(request)
        match = SESSION_PATH_RE.match(request.path)
        if request.method == "GET" and match:
            session = self.sessions.get(match["id"])
            if session is None:
                return _error(404, "invalid_request_error", f"No such checkout.session: '{match['id']}'",
                              param="session", code="resource_missing")
            return _json(session)
        return _error(404, "invalid_request_error", f"Unrecognized request URL ({request.method}: {request.path}).")

    def _create(self, request):
        params = unflatten(request.form.items(multi=True))
        key = request.headers.get("Idempotency-Key")
        if key in self._idempotent:
            first_params, body = self._idempotent[key]
            if first_params != params:
                return _error(400, "idempotency_error",
                              "Keys for idempotent requests can only be used with the same parameters they "
                              f"were first used with. Try using a key other than '{key}' if you meant to "
                              "execute a different request.")
            return _json(body, replayed=True)
        invalid = self._invalid(params)
        if invalid:
            return _error(400, "invalid_request_error", *invalid)  # not stored: Stripe replays only executed requests
        session_id = "cs_test_" + secrets.token_hex(24)
        items = params["line_items"]
        total = sum(int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in items)
        session = {
            "id": session_id, "object": "checkout.session", "mode": params["mode"], "status": "open",
            "payment_status": "unpaid", "amount_subtotal": total, "amount_total": total,
            "currency": items[0]["price_data"]["currency"], "customer_email": params.get("customer_email"),
            "client_reference_id": params.get("client_reference_id"), "metadata": params.get("metadata", {}),
            "success_url": params["success_url"], "cancel_url": params.get("cancel_url"),
            "created": int(time.time()), "expires_at": int(params["expires_at"]), "livemode": False,
            "payment_intent": None, "url": f"{self.url}/c/pay/{session_id}",
        }
        self.sessions[session_id] = session
        if key:
            self._idempotent[key] = (params, session)
        return _json(session)

    @staticmethod
    def _invalid(params):
        if params.get("mode") != "payment":
            return "Missing required param: mode.", "mode"
        if not params.get("success_url"):
            return "Missing required param: success_url.", "success_url"
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            return "Missing required param: line_items.", "line_items"
        for i, item in enumerate(items):
            price = item.get("price_data") or {}
            if not price.get("currency") or not str(price.get("unit_amount", "")).isdigit():
                return f"Invalid line_items[{i}][price_data].", f"line_items[{i}][price_data]"
        if "expires_at" in params:
            lifetime = int(params["expires_at"]) - int(time.time())
            if lifetime < MIN_LIFETIME:
                return ("The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
                        "creation.", "expires_at")
            if lifetime > MAX_LIFETIME:
                return ("The `expires_at` timestamp must be less than 24 hours from Checkout Session "
                        "creation.", "expires_at")
        return None
