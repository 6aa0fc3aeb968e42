"""Video rooms on LiveKit: access tokens, participant control, signed webhooks.

The only module that imports the livekit SDK. Without LIVEKIT_URL, LIVEKIT_API_KEY
and LIVEKIT_API_SECRET the app has no video (is_enabled() is False).

The SDK is asyncio-only and its client must be built inside a running loop, so
every server call runs its own short loop (asyncio.run) with a fresh client: fine
for Flask and RQ threads, which never run a loop of their own.
"""
import asyncio
from concurrent.futures import ThreadPoolExecutor
import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse, urlunparse

from flask import current_app

from app.errors import DomainError

log = logging.getLogger(__name__)

# A hung LiveKit must not hang the request that called it (the SDK's default is 10 s).
LIVEKIT_TIMEOUT_SECONDS = 5
# Long enough to connect; once in the room LiveKit refreshes the participant's token.
DEFAULT_TOKEN_TTL = timedelta(minutes=10)


class LiveKitError(DomainError):
    """LiveKit said no, or could not be asked; the message is safe to show."""


class LiveKitUnavailable(LiveKitError):
    """LiveKit is not configured, unreachable, failing or refusing our credentials."""

    status = 503


class ParticipantNotFound(LiveKitError):
    """The person is not (or no longer) in that LiveKit room."""

    status = 404


class InvalidWebhook(LiveKitError):
    """Missing, forged, tampered or expired webhook authorization."""

    status = 401


class MalformedWebhook(LiveKitError):
    """Properly signed, but not a webhook event we can read."""

    status = 400


@dataclass(frozen=True)
class Participant:
    sid: str
    identity: str
    name: str
    metadata: str
    joined_at: datetime | None
    can_publish: bool
    is_publisher: bool
    audio_track_sids: tuple = ()  # their published microphone (and other audio) tracks


@dataclass(frozen=True)
class WebhookEvent:
    """What our handlers need of a LiveKit webhook, free of protobuf types."""

    id: str
    event: str  # participant_joined, room_finished, track_published, ...
    created_at: datetime | None
    room_name: str
    room_sid: str
    participant_identity: str
    participant_sid: str
    participant_joined_at: datetime | None
    track_sid: str
    egress_started_at: datetime | None = None  # egress_started/ended: when the recording began


@dataclass(frozen=True)
class _Config:
    api_url: str  # http(s):// for the server API
    client_url: str  # ws(s):// for the browser
    api_key: str
    api_secret: str


def _with_scheme(url, secure, plain):
    parts = urlparse(url)
    scheme = secure if parts.scheme in ("https", "wss") else plain
    return urlunparse(parts._replace(scheme=scheme)).rstrip("/")


def init_app(app):
    config = app.config
    values = [config.get(name) for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")]
    if not any(values):
        app.extensions["livekit"] = None
        return
    if not all(values):
        # Half a configuration would fail on the first call; refuse to start instead.
        raise RuntimeError("LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set together.")
    url, key, secret = values
    if urlparse(url).scheme not in ("http", "https", "ws", "wss"):
        raise RuntimeError("LIVEKIT_URL must start with ws://, wss://, http:// or https://.")
    app.extensions["livekit"] = _Config(_with_scheme(url, "https", "http"), _with_scheme(url, "wss", "ws"),
                                        key, secret)


def is_enabled():
    return current_app.extensions.get("livekit") is not None


def _config():
    config = current_app.extensions.get("livekit")
    if config is None:
        raise LiveKitUnavailable("Video is not configured.")
    return config


def client_url():
    """The ws(s):// address the browser's LiveKit client connects to."""
    return _config().client_url


# --- tokens -------------------------------------------------------------------

def mint_token(identity, *, name, room_name, metadata=None, can_subscribe=True, can_publish=False,
               can_publish_data=False, hidden=False, recorder=False, ttl=DEFAULT_TOKEN_TTL):
    """A signed join token for one room, carrying exactly the grants given.

    ttl (a timedelta or seconds) only bounds joining: once connected, LiveKit
    refreshes the participant's token itself.
    """
    from livekit import api

    config = _config()
    if not isinstance(ttl, timedelta):
        ttl = timedelta(seconds=ttl)
    grants = api.VideoGrants(room_join=True, room=room_name, can_subscribe=can_subscribe,
                             can_publish=can_publish, can_publish_data=can_publish_data,
                             hidden=hidden or None, recorder=recorder or None)
    token = (api.AccessToken(config.api_key, config.api_secret)
             .with_identity(str(identity)).with_name(name or "")
             .with_metadata(json.dumps(metadata or {}, separators=(",", ":")))
             .with_grants(grants).with_ttl(ttl))
    return token.to_jwt()


# --- server API -----------------------------------------------------------------


def _run_to_completion(coroutine_function):
    """asyncio.run, also from a thread whose own loop is already running (an async
    server, gevent, or a test driving a browser): then on a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine_function())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine_function()).result()


def _call(method, make_request):
    """Run one RoomService call to completion; translate every failure to our errors."""
    import aiohttp
    from livekit import api

    config = _config()

    async def run():
        timeout = aiohttp.ClientTimeout(total=LIVEKIT_TIMEOUT_SECONDS)
        async with api.LiveKitAPI(config.api_url, config.api_key, config.api_secret,
                                  timeout=timeout, failover=False) as client:
            return await getattr(client.room, method)(make_request())

    try:
        return _run_to_completion(run)
    except api.ServerError as exc:
        if exc.code == api.ServerErrorCode.NOT_FOUND:
            raise ParticipantNotFound("That person is not in the room any more.") from None
        # Code and status only: the message can echo what we sent.
        log.error("LiveKit %s refused: HTTP %s, code %s", method, exc.status, exc.code)
        raise LiveKitUnavailable("The video service is not answering right now. "
                                 "Please try again in a moment.") from None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        log.error("LiveKit %s failed: %s", method, type(exc).__name__)
        raise LiveKitUnavailable("The video service is not answering right now. "
                                 "Please try again in a moment.") from None


def _participant(info):
    from livekit.protocol.models import TrackType

    joined = info.joined_at_ms / 1000 if info.joined_at_ms else info.joined_at
    return Participant(sid=info.sid, identity=info.identity, name=info.name, metadata=info.metadata,
                       joined_at=datetime.fromtimestamp(joined, UTC) if joined else None,
                       can_publish=info.permission.can_publish, is_publisher=info.is_publisher,
                       audio_track_sids=tuple(t.sid for t in info.tracks if t.type == TrackType.AUDIO))


def update_participant_permission(room_name, identity, *, can_publish, can_subscribe=True,
                                  can_publish_data=None):
    """Let someone already in the room publish, or stop them (bring on / take off stage)."""
    from livekit.protocol.models import ParticipantPermission
    from livekit.protocol.room import UpdateParticipantRequest

    permission = ParticipantPermission(
        can_subscribe=can_subscribe, can_publish=can_publish,
        can_publish_data=can_publish if can_publish_data is None else can_publish_data)
    info = _call("update_participant", lambda: UpdateParticipantRequest(
        room=room_name, identity=str(identity), permission=permission))
    return _participant(info)


def mute_track(room_name, identity, track_sid, muted=True):
    from livekit.protocol.room import MuteRoomTrackRequest

    _call("mute_published_track", lambda: MuteRoomTrackRequest(
        room=room_name, identity=str(identity), track_sid=track_sid, muted=muted))


def get_participant(room_name, identity):
    from livekit.protocol.room import RoomParticipantIdentity

    return _participant(_call("get_participant", lambda: RoomParticipantIdentity(
        room=room_name, identity=str(identity))))


def remove_participant(room_name, identity):
    from livekit.protocol.room import RoomParticipantIdentity

    _call("remove_participant", lambda: RoomParticipantIdentity(room=room_name, identity=str(identity)))


def list_participants(room_name):
    from livekit.protocol.room import ListParticipantsRequest

    response = _call("list_participants", lambda: ListParticipantsRequest(room=room_name))
    return [_participant(info) for info in response.participants]


# --- webhooks ---------------------------------------------------------------------

def _timestamp(seconds):
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def verify_webhook(body, authorization):
    """Check a webhook's Authorization (a JWT signed with our secret whose sha256
    claim is base64(sha256(body))) and read the event."""
    import jwt
    from google.protobuf.json_format import Parse, ParseError
    from livekit import api
    from livekit.protocol.webhook import WebhookEvent as WebhookEventProto

    config = _config()
    token = (authorization or "").strip()
    if token.lower().startswith("bearer "):
        token = token[len("bearer "):].strip()
    if not token:
        raise InvalidWebhook("Missing Authorization header.")
    try:
        claims = api.TokenVerifier(config.api_key, config.api_secret).verify(token)
    except (jwt.PyJWTError, ValueError):
        raise InvalidWebhook("Invalid or expired webhook token.") from None
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if not claims.sha256 or not hmac.compare_digest(claims.sha256, digest):
        raise InvalidWebhook("The webhook body does not match its signature.")
    try:
        message = Parse(body.decode("utf-8"), WebhookEventProto(), ignore_unknown_fields=True)
    except (ParseError, UnicodeDecodeError, ValueError):
        raise MalformedWebhook("Malformed LiveKit event.") from None
    if not message.id or not message.event:
        raise MalformedWebhook("The LiveKit event has no id or type.")
    participant = message.participant
    joined = participant.joined_at_ms / 1000 if participant.joined_at_ms else participant.joined_at
    egress = message.egress_info
    return WebhookEvent(id=message.id, event=message.event, created_at=_timestamp(message.created_at),
                        room_name=message.room.name or egress.room_name, room_sid=message.room.sid,
                        participant_identity=participant.identity, participant_sid=participant.sid,
                        participant_joined_at=_timestamp(joined), track_sid=message.track.sid,
                        egress_started_at=_timestamp(egress.started_at / 1e9))  # nanoseconds
