"""The live room's rules: who is here (presence in Redis), chat and its moderation.

Presence is shared by every web process through Redis: one key per open socket
(expiring unless its heartbeat refreshes it) and one sorted set per room listing
those keys by expiry, so a crashed process's sockets fade out on their own.
Changes are published on the room's channel; app/rooms/live.py fans them out.
"""
import json
import time

from sqlalchemy import and_, or_, select

from app.access.services import can, event_for
from app.errors import DomainError, Forbidden, NotFound
from app.extensions import db, redis
from app.integrations import conversations, livekit
from app.models import Room, User
from app.models.base import utcnow
from app.models.live import ChatMessage

PRESENCE_TTL = 60          # seconds a socket stays listed without a heartbeat
PRESENCE_SHOWN = 100       # names in the pushed list; the rest are counted (a big room's list
                           # would otherwise cost every socket ~80 KB on each change)
HEARTBEAT_INTERVAL = 20    # the socket refreshes its presence this often
MAX_BODY = 500
HISTORY_PAGE = 50
MUTE_SECONDS = 10 * 60
VIDEO_REMOVAL_SECONDS = 10 * 60  # a removed participant's tokens are refused this long
# How long a chat line remembers its Twilio message (for moderation and removal).
TWILIO_MESSAGE_TTL = 90 * 24 * 3600


def channel(room_id):
    return f"room:{room_id}"


def publish(room_id, kind, **data):
    """Tell every web process about a change in the room (after the commit)."""
    redis.publish(channel(room_id), json.dumps({"type": kind, **data}))


# --- rooms and access --------------------------------------------------------

def room_for(user, room_id, permission="room.join"):
    """The room and its event, if the user may do `permission` there.

    404 for a stranger to the event (or no such room), 403 for a team member
    without the permission in this room.
    """
    room = db.session.get(Room, room_id)
    if room is None:
        raise NotFound("There is no such room.")
    event = event_for(user, room.event_id, permission, room.id)
    return room, event


def may(user, permission, room):
    return can(user, permission, room.event, room.id)


# --- video moderation ----------------------------------------------------------

def _video_removal_key(room_id, user_id):
    return f"video:removed:{room_id}:{user_id}"


def video_removal_left(room_id, user_id):
    """Seconds left of a moderator's removal of the user from the room's video (0: none)."""
    return max(redis.ttl(_video_removal_key(room_id, user_id)), 0)


def _moderated_person(room, moderator, user_id):
    """The person a moderator acts on: present in the event, and not a moderator themselves."""
    person = db.session.get(User, user_id) if user_id else None
    if person is None:
        raise DomainError("Choose whom to moderate.", 422)
    if person.id == moderator.id or can(person, "chat.moderate", room.event, room.id):
        raise Forbidden("Moderators cannot mute or remove each other.")
    return person


def mute_microphone(room, moderator, user_id):
    """Mute the sound the person sends in the room's video. Returns how many tracks."""
    person = _moderated_person(room, moderator, user_id)
    participant = livekit.get_participant(room.livekit_room_name, person.id)
    for track_sid in participant.audio_track_sids:
        livekit.mute_track(room.livekit_room_name, person.id, track_sid, muted=True)
    return len(participant.audio_track_sids)


def remove_from_video(room, moderator, user_id, seconds=VIDEO_REMOVAL_SECONDS):
    """Disconnect the person from the room's video; their next tokens are refused for a while."""
    person = _moderated_person(room, moderator, user_id)
    if not livekit.is_enabled():
        raise DomainError("Video is not configured.", 409)
    redis.set(_video_removal_key(room.id, person.id), 1, ex=seconds)  # first: no new token meanwhile
    try:
        livekit.remove_participant(room.livekit_room_name, person.id)
    except livekit.ParticipantNotFound:
        pass  # not connected right now: the removal still keeps them out
    return person


# --- presence ----------------------------------------------------------------

def _presence_set(room_id):
    return f"presence:{room_id}"


def _presence_key(room_id, conn_id):
    return f"presence:{room_id}:{conn_id}"


def register_presence(room_id, conn_id, user_id, label, ttl=PRESENCE_TTL):
    """Record (or refresh) one open socket in the room. Returns nothing; publishes."""
    _write_presence(room_id, conn_id, user_id, label, ttl)
    publish(room_id, "presence")


def heartbeat_presence(room_id, conn_id, user_id, label, ttl=PRESENCE_TTL):
    """Keep the socket listed; only a socket that had expired announces itself again."""
    existed = _write_presence(room_id, conn_id, user_id, label, ttl)
    if not existed:
        publish(room_id, "presence")


def _write_presence(room_id, conn_id, user_id, label, ttl):
    key = _presence_key(room_id, conn_id)
    pipe = redis.pipeline()
    pipe.exists(key)
    pipe.set(key, json.dumps({"user_id": user_id, "label": label}), ex=ttl)
    pipe.zadd(_presence_set(room_id), {conn_id: time.time() + ttl})
    # The listing outlives every member's key (an empty room's set then goes away).
    pipe.expire(_presence_set(room_id), 2 * max(ttl, PRESENCE_TTL))
    existed = pipe.execute()[0]
    return bool(existed)


def remove_presence(room_id, conn_id):
    pipe = redis.pipeline()
    pipe.delete(_presence_key(room_id, conn_id))
    pipe.zrem(_presence_set(room_id), conn_id)
    pipe.execute()
    publish(room_id, "presence")


def presence_context(room_id):
    """What the presence list shows: the first PRESENCE_SHOWN people by name, and how many are here."""
    people = list_presence(room_id)
    return {"people": people[:PRESENCE_SHOWN], "present": len(people)}


def list_presence(room_id):
    """Everyone with an open socket in the room, once each, by name."""
    room_set = _presence_set(room_id)
    redis.zremrangebyscore(room_set, "-inf", time.time())
    conn_ids = [c.decode() for c in redis.zrange(room_set, 0, -1)]
    if not conn_ids:
        return []
    people = {}
    for raw in redis.mget([_presence_key(room_id, c) for c in conn_ids]):
        if raw is None:  # expired between the two reads
            continue
        entry = json.loads(raw)
        people[entry["user_id"]] = entry
    return sorted(people.values(), key=lambda p: (p["label"].lower(), p["user_id"]))


# --- chat --------------------------------------------------------------------

def _mute_key(room_id, user_id):
    return f"chat:mute:{room_id}:{user_id}"


def _slow_key(room_id):
    return f"chat:slow:{room_id}"


def _last_sent_key(room_id, user_id):
    return f"chat:last:{room_id}:{user_id}"


def clean_body(body):
    body = (body or "").strip()
    if not body:
        raise DomainError("Write something before sending.", 422)
    if len(body) > MAX_BODY:
        raise DomainError(f"Messages are at most {MAX_BODY} characters ({len(body)} written).", 422)
    return body


def is_muted(room_id, user_id):
    return bool(redis.exists(_mute_key(room_id, user_id)))


def slow_mode_seconds(room_id):
    value = redis.get(_slow_key(room_id))
    return int(value) if value else 0


def _check_sender(room, user, body):
    """The rules every message passes, built-in or Twilio: returns the clean body."""
    body = clean_body(body)
    if is_muted(room.id, user.id):
        raise Forbidden("You are muted in this room.")
    seconds = slow_mode_seconds(room.id)
    if seconds and not redis.set(_last_sent_key(room.id, user.id), 1, nx=True, ex=seconds):
        wait = max(redis.ttl(_last_sent_key(room.id, user.id)), 1)
        raise DomainError(f"Slow mode is on: you can send again in {wait} s.", 429)
    return body


def post_message(room, user, body):
    """Save a chat message; the caller commits, then calls announce_message.

    With Twilio Conversations the message goes to the room's conversation instead
    and returns None: it is saved and announced when Twilio's webhook brings it
    back (receive_twilio_message), as it is for everyone else in the room.
    """
    body = _check_sender(room, user, body)
    if conversations.is_enabled():
        label = user.label[:120]
        try:
            conversations.adapter().post_message(room.id, room.name, user.id, body,
                                                 {"user_id": user.id, "author_label": label})
        except conversations.ChatUnavailable:
            redis.delete(_last_sent_key(room.id, user.id))  # not sent: slow mode owes no wait
            raise
        return None
    message = ChatMessage(room_id=room.id, user_id=user.id, author_label=user.label[:120], body=body)
    db.session.add(message)
    db.session.flush()
    return message


def message_payload(message):
    return {"id": message.id, "user_id": message.user_id, "author_label": message.author_label,
            "body": message.body, "created_at": message.created_at.isoformat()}


def announce_message(message):
    publish(message.room_id, "chat", message=message_payload(message))


def _twilio_sid_key(message_id):
    return f"chat:twilio:sid:{message_id}"


def _message_id_key(twilio_sid):
    return f"chat:twilio:message:{twilio_sid}"


def receive_twilio_message(conversation_sid, twilio_sid, author, body, attributes):
    """Save a message Twilio says was added to one of our conversations; the caller
    commits, then calls announce_message.

    None when the conversation is not a room's, or the message is not one a room
    can show (no author we know, an empty or oversized body).
    """
    room_id = conversations.adapter().room_id_for(conversation_sid)
    room = db.session.get(Room, room_id) if room_id else None
    if room is None:
        return None
    author = db.session.get(User, author or "")
    body = (body or "").strip()
    if author is None or not body or len(body) > MAX_BODY:
        return None
    label = attributes.get("author_label") if attributes.get("user_id") == author.id else None
    message = ChatMessage(room_id=room.id, user_id=author.id, author_label=(label or author.label)[:120], body=body)
    db.session.add(message)
    db.session.flush()
    # Written before the commit: if the commit fails, Twilio's retry saves a new row and
    # the orphan mapping points at nothing.
    pipe = redis.pipeline()
    pipe.set(_twilio_sid_key(message.id), twilio_sid, ex=TWILIO_MESSAGE_TTL)
    pipe.set(_message_id_key(twilio_sid), message.id, ex=TWILIO_MESSAGE_TTL)
    pipe.execute()
    return message


def remove_twilio_message(twilio_sid):
    """Hide the chat line of a message removed at Twilio; the caller commits, then
    calls announce_deletion. None if we never showed it or it is already hidden."""
    message_id = redis.get(_message_id_key(twilio_sid))
    message = db.session.get(ChatMessage, message_id.decode()) if message_id else None
    if message is None or message.deleted_at is not None:
        return None
    message.deleted_at = utcnow()
    db.session.flush()
    return message


def delete_message(room, message_id, moderator):
    """Hide a message (kept on record with who deleted it); the caller commits.

    With Twilio Conversations the message is removed there first, so a Twilio
    failure leaves both sides as they were. A line whose Twilio SID Redis no
    longer holds (older than TWILIO_MESSAGE_TTL) is hidden here only.
    """
    message = db.session.get(ChatMessage, message_id)
    if message is None or message.room_id != room.id:
        raise NotFound("There is no such message.")
    if message.deleted_at is None:
        twilio_sid = redis.get(_twilio_sid_key(message.id)) if conversations.is_enabled() else None
        if twilio_sid:
            conversations.adapter().delete_message(room.id, twilio_sid.decode())
        message.deleted_at = utcnow()
        message.deleted_by_id = moderator.id
        db.session.flush()
    return message


def announce_deletion(message):
    publish(message.room_id, "chat_deleted", message_id=message.id)


def mute_user(room, user_id, seconds=MUTE_SECONDS):
    if not user_id:
        raise DomainError("Choose whom to mute.", 422)
    redis.set(_mute_key(room.id, user_id), 1, ex=seconds)


def unmute_user(room, user_id):
    redis.delete(_mute_key(room.id, user_id))


def set_slow_mode(room, seconds):
    """At most one message per `seconds` per person; 0 turns slow mode off."""
    if seconds < 0 or seconds > 3600:
        raise DomainError("Slow mode is between 0 and 3600 seconds.", 422)
    if seconds:
        redis.set(_slow_key(room.id), seconds)
    else:
        redis.delete(_slow_key(room.id))


def chat_history(room_id, before_id=None, limit=HISTORY_PAGE):
    """A page of visible messages, oldest first, and whether older ones exist.

    Keyset pagination on (created_at, id) from the message named by before_id.
    """
    query = select(ChatMessage).where(ChatMessage.room_id == room_id, ChatMessage.deleted_at.is_(None))
    if before_id:
        anchor = db.session.get(ChatMessage, before_id)
        if anchor is None or anchor.room_id != room_id:
            raise NotFound("There is no such message.")
        query = query.where(or_(ChatMessage.created_at < anchor.created_at,
                                and_(ChatMessage.created_at == anchor.created_at,
                                     ChatMessage.id < anchor.id)))
    rows = db.session.scalars(query.order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
                              .limit(limit + 1)).all()
    return list(reversed(rows[:limit])), len(rows) > limit
