"""LiveKit: the join token for a room, and LiveKit's webhooks.

Both answer JSON only: the token is fetched by the room page's script, the
webhook is called by LiveKit.

Webhooks keep two Redis records per LiveKit room, read by presence and the stage:
  livekit:room:<name>:participants  hash, identity (user id) -> joined_at ISO
  livekit:room:<name>:started       ISO time the room started, absent when it is over
"""
import logging
from datetime import UTC, datetime

from flask import current_app, jsonify, request
from flask_login import current_user
from sqlalchemy import select

from app.access.services import can
from app.errors import DomainError, Forbidden
from app.extensions import csrf, db, redis
from app.integrations import livekit
from app.models import EventStatus, Room, RoomKind
from app.rooms import bp
from app.rooms.stage import may_publish_via_stage, recording_started_key
from app.rooms.services import room_for, video_removal_left
from app.rooms.tokens import grants_for, participant_metadata

log = logging.getLogger(__name__)

WEBHOOK_SEEN_TTL = 24 * 3600  # LiveKit retries for minutes; a day is far beyond that
# Safety net for a lost room_finished: the records of a room nobody touches for a day go.
ROOM_STATE_TTL = 24 * 3600


def _error(message, status):
    response = jsonify(error=message)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _wants_json():
    """Script calls (fetch, htmx, XHR) get a JSON 401; a page navigation the sign-in redirect."""
    accept = request.accept_mimetypes
    return (request.headers.get("HX-Request") == "true"
            or request.headers.get("X-Requested-With") == "XMLHttpRequest"
            or accept.best_match(["application/json", "text/html"]) == "application/json")


def _room_for_token(user, room_id):
    """The room, if the user may join its video now.

    A fan being vetted may join the event's backstage room for the camera check even
    when their ticket reaches only the main room. An event that is not active (a
    draft, or archived) has video for its stage team only.
    """
    try:
        room, event = room_for(user, room_id)
    except Forbidden:
        room = db.session.get(Room, room_id)
        if room is None or room.kind != RoomKind.BACKSTAGE or not may_publish_via_stage(user, room):
            raise
        event = room.event
    if event.status != EventStatus.ACTIVE and not can(user, "stage.manage", event, room.id):
        raise Forbidden("This event is not open yet, or has ended: its video is for the event's team only.")
    if video_removal_left(room.id, user.id):
        raise Forbidden("A moderator removed you from this room's video. Try again in a few minutes.")
    return room, event


@bp.get("/rooms/<room_id>/token")
def token(room_id):
    if not current_user.is_authenticated:
        if _wants_json():
            return _error("Please sign in to join the room.", 401)
        return current_app.login_manager.unauthorized()
    try:
        room, _event = _room_for_token(current_user, room_id)
        grants = grants_for(current_user, room, hidden=request.args.get("hidden") == "1")
        if not livekit.is_enabled():
            return _error("Video is not configured.", 503)
        ttl = livekit.DEFAULT_TOKEN_TTL
        jwt = livekit.mint_token(
            current_user.id, name=current_user.label, room_name=room.livekit_room_name,
            metadata=participant_metadata(current_user, room.event, room),
            can_subscribe=grants.can_subscribe, can_publish=grants.can_publish,
            can_publish_data=grants.can_publish_data, hidden=grants.hidden, recorder=grants.recorder,
            ttl=ttl)
    except DomainError as exc:
        return _error(exc.message, exc.status)
    response = jsonify(token=jwt, url=livekit.client_url(), identity=current_user.id,
                       expires_in=int(ttl.total_seconds()))
    response.headers["Cache-Control"] = "no-store"
    return response


# --- webhooks -----------------------------------------------------------------------

def participants_key(livekit_room_name):
    return f"livekit:room:{livekit_room_name}:participants"


def _sessions_key(livekit_room_name):
    # identity -> the participant sid that joined last, so a late "left" of an
    # earlier session (a reconnect) does not remove the person who is back.
    return f"livekit:room:{livekit_room_name}:sessions"


def started_key(livekit_room_name):
    return f"livekit:room:{livekit_room_name}:started"


def video_participants(livekit_room_name):
    """{user id: joined_at ISO} of the people LiveKit says are in the room."""
    return {k.decode(): v.decode() for k, v in redis.hgetall(participants_key(livekit_room_name)).items()}


def _iso(moment):
    return (moment or datetime.now(UTC)).isoformat()


_JOIN = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
"""

_LEAVE = """
local sid = redis.call('HGET', KEYS[2], ARGV[1])
if (not sid) or ARGV[2] == '' or sid == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
"""


def _participant_joined(event):
    name = event.room_name
    redis.eval(_JOIN, 2, participants_key(name), _sessions_key(name), event.participant_identity,
               _iso(event.participant_joined_at or event.created_at), event.participant_sid, ROOM_STATE_TTL)


def _participant_left(event):
    name = event.room_name
    redis.eval(_LEAVE, 2, participants_key(name), _sessions_key(name), event.participant_identity,
               event.participant_sid)


def _room_started(event):
    redis.set(started_key(event.room_name), _iso(event.created_at), ex=ROOM_STATE_TTL)


def _room_finished(event):
    name = event.room_name
    redis.delete(started_key(name), participants_key(name), _sessions_key(name))


def _egress_started(event):
    """A recording of the room began: stage events from now on carry their offset."""
    room = db.session.scalar(select(Room).where(Room.livekit_room_name == event.room_name))
    if room is not None:
        started = event.egress_started_at or event.created_at or datetime.now(UTC)
        redis.set(recording_started_key(room.id), started.isoformat(), ex=ROOM_STATE_TTL)


def _egress_ended(event):
    room = db.session.scalar(select(Room).where(Room.livekit_room_name == event.room_name))
    if room is not None:
        redis.delete(recording_started_key(room.id))


def _track_changed(event):
    log.info("LiveKit %s: room %s, participant %s, track %s", event.event, event.room_name,
             event.participant_identity, event.track_sid)


WEBHOOK_HANDLERS = {
    "participant_joined": _participant_joined,
    "participant_left": _participant_left,
    "room_started": _room_started,
    "room_finished": _room_finished,
    "track_published": _track_changed,
    "track_unpublished": _track_changed,
    "egress_started": _egress_started,
    "egress_ended": _egress_ended,
}


@bp.post("/webhooks/livekit")
@csrf.exempt  # LiveKit cannot send our CSRF token; its signed JWT stands in for it
def livekit_webhook():
    if not livekit.is_enabled():
        return _error("Video is not configured.", 404)
    try:
        event = livekit.verify_webhook(request.get_data(), request.headers.get("Authorization"))
    except livekit.LiveKitError as exc:
        log.info("LiveKit webhook refused: %s", exc.message)
        return _error(exc.message, exc.status)
    handler = WEBHOOK_HANDLERS.get(event.event)
    if handler is None:
        return jsonify(received=True, ignored=event.event)
    if not event.room_name:
        return _error("The LiveKit event names no room.", 400)
    seen = f"livekit:webhook:{event.id}"
    # LiveKit delivers at least once: the first delivery of an id acts, repeats only answer.
    if not redis.set(seen, "1", nx=True, ex=WEBHOOK_SEEN_TTL):
        return jsonify(received=True, duplicate=True)
    try:
        handler(event)
    except Exception:
        redis.delete(seen)  # let LiveKit's retry do what this delivery could not
        raise
    return jsonify(received=True)
