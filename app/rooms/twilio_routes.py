"""Twilio Conversations' webhook: how a room's chat messages arrive in Twilio mode.

Twilio calls it (form-encoded, signed with X-Twilio-Signature) after a message is
added to or removed from a conversation of our service. The service's webhook
URL is set in the Twilio console to this route's public URL, with the
onMessageAdded and onMessageRemoved events.
"""
import json
import logging

from flask import current_app, jsonify, request

from app.errors import DomainError
from app.extensions import csrf, db, redis
from app.integrations import conversations
from app.rooms import bp, services

log = logging.getLogger(__name__)

WEBHOOK_SEEN_TTL = 24 * 3600  # Twilio retries for minutes; a day is far beyond that


def _error(message, status):
    response = jsonify(error=message)
    response.status_code = status
    return response


def public_url():
    """The URL Twilio called, which its signature covers.

    With SERVER_NAME set, the configured public scheme and host; else the request's
    own, which ProxyFix (PROXY_COUNT) corrects behind a proxy.
    """
    config = current_app.config
    if not config.get("SERVER_NAME"):
        return request.url
    url = f"{config['PREFERRED_URL_SCHEME']}://{config['SERVER_NAME']}{request.script_root}{request.path}"
    query = request.query_string.decode()
    return f"{url}?{query}" if query else url


def _attributes(raw):
    try:
        attributes = json.loads(raw or "{}")
    except ValueError:
        return {}
    return attributes if isinstance(attributes, dict) else {}


def _message_added(form):
    message = services.receive_twilio_message(
        form["ConversationSid"], form["MessageSid"], form.get("Author"), form.get("Body"),
        _attributes(form.get("Attributes")))
    if message is None:
        return None
    db.session.commit()
    return lambda: services.announce_message(message)


def _message_removed(form):
    message = services.remove_twilio_message(form["MessageSid"])
    if message is None:
        return None
    db.session.commit()
    return lambda: services.announce_deletion(message)


HANDLERS = {"onMessageAdded": _message_added, "onMessageRemoved": _message_removed}


@bp.post("/webhooks/twilio/conversations")
@csrf.exempt  # Twilio cannot send our CSRF token; its signature stands in for it
def twilio_conversations_webhook():
    if not conversations.is_enabled():
        return _error("Chat is not on Twilio.", 404)
    form = request.form
    if not conversations.verify_webhook(public_url(), form, request.headers.get("X-Twilio-Signature")):
        log.info("Twilio Conversations webhook refused: bad or missing signature")
        return _error("The Twilio signature is missing or wrong.", 403)
    event_type = form.get("EventType")
    if not event_type:
        return _error("The webhook names no EventType.", 400)
    handler = HANDLERS.get(event_type)
    if handler is None:
        return jsonify(received=True, ignored=event_type)
    if not form.get("ConversationSid") or not form.get("MessageSid"):
        return _error("The webhook names no ConversationSid or MessageSid.", 400)
    seen = f"twilio:webhook:{event_type}:{form['MessageSid']}"
    # Twilio delivers at least once: the first delivery acts, repeats only answer.
    if not redis.set(seen, "1", nx=True, ex=WEBHOOK_SEEN_TTL):
        return jsonify(received=True, duplicate=True)
    try:
        announce = handler(form)
    except DomainError as exc:  # Twilio unreachable while we look up the conversation
        db.session.rollback()
        redis.delete(seen)  # let Twilio's retry do what this delivery could not
        return _error(exc.message, exc.status)
    except Exception:
        redis.delete(seen)
        raise
    if announce is None:
        return jsonify(received=True, ignored=event_type)
    announce()
    return jsonify(received=True)
