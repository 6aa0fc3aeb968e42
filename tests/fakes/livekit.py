"""A fake LiveKit RoomService on 127.0.0.1, spoken to by the real livekit-api SDK.

Twirp over HTTP: POST /twirp/livekit.RoomService/<Method>, protobuf body, bearer
JWT (HS256 with the API secret) whose video grant must be roomAdmin for the
request's room. Each call is recorded as (method, parsed request, grants).
Errors are Twirp JSON ({"code", "msg"}), as the SDK expects.

A browser's join is recorded too: the LiveKit JS SDK opens its signal socket at
GET /rtc (or /rtc/v1)?access_token=... (then asks .../validate why it failed). The fake has no
media server, so it refuses the upgrade and records the token's claims in `joins`.

signed_webhook() builds a webhook request the way LiveKit does: the body is the
event as protobuf JSON, Authorization the bare JWT whose sha256 claim is
base64(sha256(body)).
"""
import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass

import jwt
from livekit.protocol.models import ParticipantInfo, TrackInfo, TrackType
from livekit.protocol.room import (ListParticipantsRequest, ListParticipantsResponse, MuteRoomTrackRequest,
                                   MuteRoomTrackResponse, RemoveParticipantResponse, RoomParticipantIdentity,
                                   UpdateParticipantRequest)
from werkzeug.wrappers import Request, Response

from tests.fakes.server import FakeService

PREFIX = "/twirp/livekit.RoomService/"
REQUEST_TYPES = {
    "UpdateParticipant": UpdateParticipantRequest,
    "MutePublishedTrack": MuteRoomTrackRequest,
    "RemoveParticipant": RoomParticipantIdentity,
    "GetParticipant": RoomParticipantIdentity,
    "ListParticipants": ListParticipantsRequest,
}


@dataclass
class Call:
    method: str
    message: object  # the parsed protobuf request
    grants: dict  # the token's "video" claim


def _twirp_error(status, code, msg):
    return Response(json.dumps({"code": code, "msg": msg}), status, mimetype="application/json")


class FakeLiveKit(FakeService):
    def __init__(self, api_key, api_secret):
        self.api_key, self.api_secret = api_key, api_secret
        self.calls = []
        self.rejected = []  # (method, reason) of calls refused for their token
        self.joins = []  # claims of the tokens browsers presented at /rtc
        self.down = False  # answer every call with a 500, as during an outage
        self.rooms = {}  # room name -> {identity: ParticipantInfo}
        self._lock = threading.Lock()
        self._serve(self._wsgi)

    def reset(self):
        with self._lock:
            self.calls.clear()
            self.rejected.clear()
            self.joins.clear()
            self.rooms.clear()
            self.down = False

    def add_participant(self, room, identity, name="", tracks=(), audio_tracks=()):
        info = ParticipantInfo(sid="PA_" + secrets.token_hex(6), identity=identity, name=name,
                               joined_at=int(time.time()), state=ParticipantInfo.State.ACTIVE)
        for sid in tracks:
            info.tracks.append(TrackInfo(sid=sid, type=TrackType.VIDEO))
        for sid in audio_tracks:
            info.tracks.append(TrackInfo(sid=sid, type=TrackType.AUDIO))
        with self._lock:
            self.rooms.setdefault(room, {})[identity] = info
        return info

    def calls_to(self, method):
        return [c for c in self.calls if c.method == method]

    # The API --------------------------------------------------------------------

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request):
        if request.path.startswith("/rtc"):
            return self._signal(request)
        method = request.path[len(PREFIX):] if request.path.startswith(PREFIX) else None
        if request.method != "POST" or method not in REQUEST_TYPES:
            return _twirp_error(404, "bad_route", f"no handler for {request.path}")
        if request.content_type != "application/protobuf":
            return _twirp_error(400, "malformed", "expected application/protobuf")
        try:
            message = REQUEST_TYPES[method].FromString(request.get_data())
        except Exception:  # noqa: BLE001  (any decode failure is the client's fault)
            return _twirp_error(400, "malformed", "cannot decode the request body")
        grants, reason = self._grants(request.headers.get("Authorization", ""), message.room)
        if reason:
            self.rejected.append((method, reason))
            return _twirp_error(401, "unauthenticated", reason)
        self.calls.append(Call(method, message, grants))
        if self.down:
            return _twirp_error(500, "internal", "server error")
        return getattr(self, "_" + method)(message)

    def _grants(self, authorization, room):
        if not authorization.startswith("Bearer "):
            return None, "missing bearer token"
        try:
            claims = jwt.decode(authorization[len("Bearer "):], self.api_secret, algorithms=["HS256"],
                                issuer=self.api_key, options={"require": ["exp", "iss"]})
        except jwt.PyJWTError as exc:
            return None, f"invalid token: {type(exc).__name__}"
        video = claims.get("video") or {}
        if not video.get("roomAdmin") or video.get("room") != room:
            return video, "token lacks roomAdmin for this room"
        return video, None

    def _signal(self, request):
        try:
            claims = jwt.decode(request.args.get("access_token", ""), self.api_secret, algorithms=["HS256"],
                                issuer=self.api_key)
        except jwt.PyJWTError as exc:
            return Response(f"invalid token: {type(exc).__name__}", 401)
        if not request.path.rstrip("/").endswith("/validate"):
            self.joins.append(claims)
        return Response("this fake has no media server", 503)

    def _participant(self, message):
        return self.rooms.get(message.room, {}).get(message.identity)

    def _not_found(self):
        return _twirp_error(404, "not_found", "participant not found")

    def _UpdateParticipant(self, message):
        info = self._participant(message)
        if info is None:
            return self._not_found()
        if message.HasField("permission"):
            info.permission.CopyFrom(message.permission)
        return Response(info.SerializeToString(), 200, mimetype="application/protobuf")

    def _MutePublishedTrack(self, message):
        info = self._participant(message)
        track = next((t for t in info.tracks if t.sid == message.track_sid), None) if info else None
        if track is None:
            return _twirp_error(404, "not_found", "track not found")
        track.muted = message.muted
        return Response(MuteRoomTrackResponse(track=track).SerializeToString(), 200,
                        mimetype="application/protobuf")

    def _RemoveParticipant(self, message):
        if self._participant(message) is None:
            return self._not_found()
        del self.rooms[message.room][message.identity]
        return Response(RemoveParticipantResponse().SerializeToString(), 200, mimetype="application/protobuf")

    def _GetParticipant(self, message):
        info = self._participant(message)
        if info is None:
            return self._not_found()
        return Response(info.SerializeToString(), 200, mimetype="application/protobuf")

    def _ListParticipants(self, message):
        response = ListParticipantsResponse(participants=list(self.rooms.get(message.room, {}).values()))
        return Response(response.SerializeToString(), 200, mimetype="application/protobuf")


def webhook_event(event, room_name, *, identity=None, participant_sid=None, track_sid=None, event_id=None):
    """A webhook body as LiveKit sends it (protobuf JSON, camelCase)."""
    body = {"event": event, "id": event_id or "EV_" + secrets.token_hex(6), "createdAt": str(int(time.time())),
            "room": {"name": room_name, "sid": "RM_" + room_name}}
    if identity is not None:
        body["participant"] = {"identity": identity, "sid": participant_sid or "PA_" + identity,
                               "joinedAt": str(int(time.time()))}
    if track_sid is not None:
        body["track"] = {"sid": track_sid}
    return json.dumps(body).encode()


def signed_webhook(body, api_key, api_secret, *, expires_in=300):
    """The Authorization header LiveKit would send with this body."""
    now = int(time.time())
    claims = {"iss": api_key, "nbf": now - 1, "exp": now + expires_in,
              "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()}
    return jwt.encode(claims, api_secret, algorithm="HS256")
