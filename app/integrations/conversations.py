"""Twilio Conversations as the room chat, when TWILIO_CONVERSATIONS_SERVICE_SID is set.

Each room has one conversation in our Conversations service, named
"room-<room id>" (unique_name). Twilio accepts the unique name wherever it takes
a conversation SID, so we keep no column for it. Messages are posted through the
REST API with webhooks enabled; Twilio then calls our webhook (onMessageAdded,
onMessageRemoved), which is how a message reaches the room.

Redis remembers which conversation SID is which room (webhooks name only the
SID) and which rooms already have their conversation, so a message costs one
API call.
"""
import json
import logging

from flask import current_app

from app.errors import DomainError
from app.integrations.sms import twilio_client

log = logging.getLogger(__name__)

UNIQUE_PREFIX = "room-"
CONVERSATION_CACHE_TTL = 30 * 24 * 3600
DUPLICATE_UNIQUE_NAME = 50353  # "Conversation with provided unique name already exists"


class ChatUnavailable(DomainError):
    """Twilio is unreachable, failing or refusing our credentials: not the user's doing."""

    status = 503

    def __init__(self, message="Chat is unavailable right now. Please try again in a moment.", status=None):
        super().__init__(message, status)


def unique_name(room_id):
    return f"{UNIQUE_PREFIX}{room_id}"


def room_id_from(name):
    """The room id in one of our unique names, or None for a conversation that is not ours."""
    if name and name.startswith(UNIQUE_PREFIX) and len(name) > len(UNIQUE_PREFIX):
        return name[len(UNIQUE_PREFIX):]
    return None


def _room_key(room_id):
    return f"twilio:conversation:room:{room_id}"


def _sid_key(conversation_sid):
    return f"twilio:conversation:sid:{conversation_sid}"


class TwilioConversations:
    def __init__(self, client, service_sid, redis):
        from requests import RequestException
        from twilio.base.exceptions import TwilioException, TwilioRestException

        self.client, self.service_sid, self.redis = client, service_sid, redis
        self.errors = (TwilioException, RequestException)  # network failures come from requests
        self.rest_error = TwilioRestException

    def _conversations(self):
        return self.client.conversations.v1.services(self.service_sid).conversations

    def _failed(self, action, exc):
        log.error("Twilio Conversations could not %s: HTTP %s, error %s", action,
                  getattr(exc, "status", type(exc).__name__), getattr(exc, "code", None))
        return ChatUnavailable()

    def _status(self, exc):
        return getattr(exc, "status", None) if isinstance(exc, self.rest_error) else None

    def _remember(self, room_id, conversation_sid):
        pipe = self.redis.pipeline()
        pipe.set(_room_key(room_id), conversation_sid, ex=CONVERSATION_CACHE_TTL)
        pipe.set(_sid_key(conversation_sid), room_id, ex=CONVERSATION_CACHE_TTL)
        pipe.execute()

    def _forget(self, room_id):
        self.redis.delete(_room_key(room_id))

    def ensure_conversation(self, room_id, friendly_name):
        """The SID of the room's conversation, created on first use."""
        cached = self.redis.get(_room_key(room_id))
        if cached:
            return cached.decode()
        name = unique_name(room_id)
        try:
            try:
                conversation = self._conversations().create(unique_name=name, friendly_name=friendly_name[:256])
            except self.rest_error as exc:
                # Another process created it first, or our cache was lost: it exists.
                if exc.status != 409 and exc.code != DUPLICATE_UNIQUE_NAME:
                    raise
                conversation = self._conversations()(name).fetch()
        except self.errors as exc:
            raise self._failed("open the room's conversation", exc) from None
        self._remember(room_id, conversation.sid)
        return conversation.sid

    def post_message(self, room_id, friendly_name, author, body, attributes):
        """Post to the room's conversation; returns Twilio's message SID."""
        for attempt in range(2):
            self.ensure_conversation(room_id, friendly_name)
            try:
                message = self._conversations()(unique_name(room_id)).messages.create(
                    author=author, body=body, attributes=json.dumps(attributes),
                    # REST calls fire no webhooks unless asked: ours is how the room sees it.
                    x_twilio_webhook_enabled="true")
                return message.sid
            except self.errors as exc:
                if self._status(exc) == 404 and attempt == 0:
                    self._forget(room_id)  # the conversation was deleted at Twilio: make it again
                    continue
                raise self._failed("post a message", exc) from None

    def delete_message(self, room_id, message_sid):
        """Remove a message at Twilio; one already gone counts as removed."""
        try:
            # Our moderation route hides and announces the line itself, so no webhook is asked for.
            self._conversations()(unique_name(room_id)).messages(message_sid).delete()
        except self.errors as exc:
            if self._status(exc) == 404:
                return
            raise self._failed("delete a message", exc) from None

    def room_id_for(self, conversation_sid):
        """Our room id for a conversation SID, or None when the conversation is not ours."""
        cached = self.redis.get(_sid_key(conversation_sid))
        if cached:
            return cached.decode()
        try:
            conversation = self._conversations()(conversation_sid).fetch()
        except self.errors as exc:
            if self._status(exc) == 404:
                return None
            raise self._failed("look up a conversation", exc) from None
        room_id = room_id_from(conversation.unique_name)
        if room_id:
            self._remember(room_id, conversation.sid)
        return room_id


def is_enabled(config=None):
    config = config or current_app.config
    return bool(config.get("TWILIO_CONVERSATIONS_SERVICE_SID") and config.get("TWILIO_ACCOUNT_SID")
                and config.get("TWILIO_AUTH_TOKEN"))


def adapter():
    """This app's Conversations adapter (built on first use)."""
    from app.extensions import redis

    conversations = current_app.extensions.get("twilio_conversations")
    if conversations is None:
        config = current_app.config
        base_url = config.get("TWILIO_API_BASE_URL")
        client = twilio_client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"], base_url)
        if base_url:
            client.conversations.base_url = base_url
        conversations = TwilioConversations(client, config["TWILIO_CONVERSATIONS_SERVICE_SID"], redis)
        current_app.extensions["twilio_conversations"] = conversations
    return conversations


def verify_webhook(url, params, signature):
    """Whether X-Twilio-Signature is Twilio's over this URL and these form fields."""
    from twilio.request_validator import RequestValidator

    if not signature:
        return False
    return RequestValidator(current_app.config["TWILIO_AUTH_TOKEN"]).validate(url, params, signature)

