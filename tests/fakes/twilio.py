"""Fake Twilio APIs on 127.0.0.1, spoken to by the real twilio SDK.

FakeTwilioVerify answers the two calls sign-in makes, in Twilio's wire format:
POST /v2/Services/{ServiceSid}/Verifications and .../VerificationCheck
(form-encoded, HTTP Basic auth with the account SID and auth token). Each
"sent" code can be read back with code_for(phone), as if off the phone.

FakeTwilioConversations answers the Conversations v1 calls the room chat makes
(conversations of one service, their messages) and queues the post-event
webhooks Twilio would send; deliver_webhooks() posts them to our app, signed
with X-Twilio-Signature as Twilio signs them.
"""
import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from werkzeug.wrappers import Request, Response

from tests.fakes.server import FakeService

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


class FakeTwilioVerify(FakeService):
    def __init__(self, account_sid, auth_token, service_sid):
        self.account_sid, self.auth_token, self.service_sid = account_sid, auth_token, service_sid
        self.requests = []
        self.invalid_numbers = set()
        self.down = False  # answer every call with a 500, as during an outage
        self._verifications = {}  # phone -> its latest Verification
        self._lock = threading.Lock()
        self._serve(self._wsgi)

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
            url=f"{self.url}/v2/Services/{self.service_sid}/Verifications/{verification.sid}")
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


# --- Conversations --------------------------------------------------------------

CONVERSATIONS_RE = re.compile(
    r"^/v1/Services/(?P<service>[^/]+)/Conversations"
    r"(?:/(?P<conversation>[^/]+)(?:/(?P<messages>Messages)(?:/(?P<message>[^/]+))?)?)?$")


def twilio_signature(auth_token, url, params):
    """X-Twilio-Signature: HMAC-SHA1 of the URL and the sorted form fields, base64."""
    data = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@dataclass
class Call:
    method: str
    path: str
    form: dict
    webhook_enabled: str | None


class FakeTwilioConversations(FakeService):
    def __init__(self, account_sid, auth_token, service_sid):
        self.account_sid, self.auth_token, self.service_sid = account_sid, auth_token, service_sid
        self.requests = []
        self.webhooks = []  # form fields of the webhooks Twilio would send, oldest first
        self.down = False
        self._conversations = {}  # sid -> resource dict
        self._messages = {}  # conversation sid -> {message sid: resource dict}
        self._lock = threading.Lock()
        self._serve(self._wsgi)

    def reset(self):
        with self._lock:
            self.requests.clear()
            self.webhooks.clear()
            self._conversations.clear()
            self._messages.clear()
            self.down = False

    # What the test reads and does -------------------------------------------

    def calls(self, method=None, suffix=""):
        return [r for r in self.requests
                if (method is None or r.method == method) and r.path.endswith(suffix)]

    def conversation(self, unique_name):
        with self._lock:
            return next((c for c in self._conversations.values() if c["unique_name"] == unique_name), None)

    def messages(self, unique_name):
        conversation = self.conversation(unique_name)
        with self._lock:
            return list(self._messages.get(conversation["sid"], {}).values()) if conversation else []

    def add_conversation(self, unique_name, friendly_name=None):
        """A conversation made outside our app (another integration on the same service)."""
        with self._lock:
            return self._create_conversation(unique_name, friendly_name)

    def sign(self, url, params):
        return twilio_signature(self.auth_token, url, params)

    def post_webhook(self, client, params, path="/webhooks/twilio/conversations",
                     base="http://localhost", signature=None):
        """POST form fields to our app as Twilio does; signature defaults to the right one."""
        signature = self.sign(base + path, params) if signature is None else signature
        return client.post(path, data=params, base_url=base,
                           headers={"X-Twilio-Signature": signature,
                                    "I-Twilio-Idempotency-Token": secrets.token_hex(8)})

    def deliver_webhooks(self, client, **kwargs):
        """Send every queued webhook to our app; returns the responses."""
        with self._lock:
            queued, self.webhooks[:] = list(self.webhooks), []
        return [self.post_webhook(client, params, **kwargs) for params in queued]

    # The API ---------------------------------------------------------------

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        auth = request.authorization
        with self._lock:
            self.requests.append(Call(request.method, request.path, request.form.to_dict(),
                                      request.headers.get("X-Twilio-Webhook-Enabled")))
            response = self._answer(request, auth)
        return response(environ, start_response)

    def _not_found(self, request):
        return _error(404, 20404, f"The requested resource {request.path} was not found")

    def _answer(self, request, auth):
        if (auth is None or auth.type != "basic" or auth.username != self.account_sid
                or auth.password != self.auth_token):
            response = _error(401, 20003, "Authenticate")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response
        if self.down:
            return _error(500, 20500, "Internal Server Error")
        match = CONVERSATIONS_RE.match(request.path)
        if not match or match["service"] != self.service_sid:
            return self._not_found(request)
        if match["conversation"] is None:
            if request.method == "POST":
                return self._create(request)
            return self._not_found(request)
        conversation = self._find(match["conversation"])
        if conversation is None:
            return self._not_found(request)
        if match["messages"] is None:
            if request.method == "GET":
                return _json(conversation)
            return self._not_found(request)
        if match["message"] is None:
            if request.method == "POST":
                return self._post_message(request, conversation)
            if request.method == "GET":
                return self._list_messages(request, conversation)
            return self._not_found(request)
        if request.method == "DELETE":
            return self._delete_message(request, conversation, match["message"])
        if request.method == "GET":
            message = self._messages[conversation["sid"]].get(match["message"])
            return _json(message) if message else self._not_found(request)
        return self._not_found(request)

    def _find(self, sid_or_name):
        if sid_or_name in self._conversations:
            return self._conversations[sid_or_name]
        return next((c for c in self._conversations.values() if c["unique_name"] == sid_or_name), None)

    def _create_conversation(self, unique_name, friendly_name):
        sid = "CH" + secrets.token_hex(16)
        url = f"{self.url}/v1/Services/{self.service_sid}/Conversations/{sid}"
        conversation = {
            "sid": sid, "account_sid": self.account_sid, "chat_service_sid": self.service_sid,
            "messaging_service_sid": "MG" + "0" * 32, "unique_name": unique_name,
            "friendly_name": friendly_name, "attributes": "{}", "state": "active",
            "date_created": _now(), "date_updated": _now(), "timers": {}, "bindings": None,
            "url": url, "links": {"participants": f"{url}/Participants", "messages": f"{url}/Messages",
                                  "webhooks": f"{url}/Webhooks"},
        }
        self._conversations[sid] = conversation
        self._messages[sid] = {}
        return conversation

    def _create(self, request):
        unique_name = request.form.get("UniqueName")
        if unique_name and self._find(unique_name):
            return _error(409, 50353, "Conversation with provided unique name already exists")
        return _json(self._create_conversation(unique_name, request.form.get("FriendlyName")), 201)

    def _post_message(self, request, conversation):
        form = request.form
        body, attributes = form.get("Body", ""), form.get("Attributes") or "{}"
        if not body and not form.get("MediaSid"):
            return _error(400, 50008, "Message body or media is required")
        if len(body) > 1600:
            return _error(400, 50007, "Message body is too long")
        try:
            json.loads(attributes)
        except ValueError:
            return _error(400, 50006, "Invalid attributes JSON")
        messages = self._messages[conversation["sid"]]
        sid = "IM" + secrets.token_hex(16)
        message = {
            "sid": sid, "account_sid": self.account_sid, "chat_service_sid": self.service_sid,
            "conversation_sid": conversation["sid"], "index": len(messages),
            "author": form.get("Author") or "system", "body": body, "media": None,
            "attributes": attributes, "participant_sid": None, "date_created": _now(), "date_updated": _now(),
            "delivery": None, "content_sid": None,
            "url": f"{conversation['url']}/Messages/{sid}",
            "links": {"delivery_receipts": f"{conversation['url']}/Messages/{sid}/Receipts",
                      "channel_metadata": f"{conversation['url']}/Messages/{sid}/ChannelMetadata"},
        }
        messages[sid] = message
        if request.headers.get("X-Twilio-Webhook-Enabled") == "true":
            self.webhooks.append(self._event("onMessageAdded", conversation, message))
        return _json(message, 201)

    def _list_messages(self, request, conversation):
        messages = list(self._messages[conversation["sid"]].values())
        url = f"{conversation['url']}/Messages?PageSize=50&Page=0"
        return _json({"messages": messages, "meta": {
            "page": 0, "page_size": 50, "first_page_url": url, "previous_page_url": None,
            "url": url, "next_page_url": None, "key": "messages"}})

    def _delete_message(self, request, conversation, message_sid):
        message = self._messages[conversation["sid"]].pop(message_sid, None)
        if message is None:
            return self._not_found(request)
        if request.headers.get("X-Twilio-Webhook-Enabled") == "true":
            self.webhooks.append(self._event("onMessageRemoved", conversation, message))
        return Response(status=204)

    def _event(self, event_type, conversation, message):
        """The form fields of a Conversations post-event webhook about one message."""
        return {
            "EventType": event_type, "AccountSid": self.account_sid, "ChatServiceSid": self.service_sid,
            "ConversationSid": conversation["sid"], "MessageSid": message["sid"],
            "MessagingServiceSid": conversation["messaging_service_sid"], "Index": str(message["index"]),
            "DateCreated": message["date_created"], "Body": message["body"], "Author": message["author"],
            "Attributes": message["attributes"], "Source": "API", "RetryCount": "0",
            "WebhookType": "webhook", "WebhookSid": "WH" + "0" * 32,
        }


def _json(body, status=200):
    return Response(json.dumps(body), status, mimetype="application/json")
