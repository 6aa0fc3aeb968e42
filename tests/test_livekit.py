"""LiveKit: join tokens per role, participant control against a fake LiveKit
server spoken to by the real SDK, and signed webhooks kept in Redis."""
import asyncio
import json
import threading
import time

import jwt
import pytest
from flask import Flask

from app.extensions import db, redis
from app.integrations import livekit
from app.rooms.livekit_routes import started_key, video_participants
from tests.conftest import LIVEKIT_KEY, LIVEKIT_SECRET, RecordingSocket, post
from tests.fakes.livekit import signed_webhook, webhook_event

KEY, SECRET = LIVEKIT_KEY, LIVEKIT_SECRET


@pytest.fixture
def lk_client(app, lk_app):
    return lk_app.test_client()


@pytest.fixture
def rooms(data_app):
    """{kind: (room id, livekit room name)} of an event."""
    from app.models import Event

    def of(event_id):
        with data_app.app_context():
            event = db.session.get(Event, event_id)
            return {room.kind: (room.id, room.livekit_room_name) for room in event.rooms}
    return of


@pytest.fixture
def give_role(data_app):
    from app.access.services import grant_role
    from app.models import Event, User

    def give(event_id, user_id, role_id, room_id=None):
        with data_app.app_context():
            grant_role(db.session.get(Event, event_id), role_id, user=db.session.get(User, user_id),
                       room_id=room_id)
            db.session.commit()
    return give


@pytest.fixture
def person(make_user, sign_in, lk_app):
    """A signed-in client (against the LiveKit-enabled app) for a new user: (client, user id)."""
    def make(email, **fields):
        user_id = make_user(email, **fields)
        return sign_in(email, lk_app.test_client()), user_id
    return make


def _decode(token):
    return jwt.decode(token, SECRET, algorithms=["HS256"], issuer=KEY)


def _token(client, room_id, **params):
    return client.get(f"/rooms/{room_id}/token", query_string=params, headers={"Accept": "application/json"})


# --- tokens ------------------------------------------------------------------------

def test_attendee_may_watch_but_not_publish(person, make_event, give_role, rooms):
    client, user_id = person("ann@example.com", name="Ann Attendee")
    event_id = make_event()
    give_role(event_id, user_id, "attendee")
    room_id, room_name = rooms(event_id)["main"]

    response = _token(client, room_id)

    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["url"].startswith("ws://127.0.0.1:")
    assert body["identity"] == user_id and body["expires_in"] == 600
    claims = _decode(body["token"])
    assert claims["sub"] == user_id and claims["name"] == "Ann Attendee"
    assert claims["exp"] - claims["nbf"] == 600
    assert json.loads(claims["metadata"]) == {"user_id": user_id, "role": "Attendee", "role_id": "attendee"}
    video = claims["video"]
    assert video["roomJoin"] is True and video["room"] == room_name
    assert video["canSubscribe"] is True
    assert video["canPublish"] is False and video["canPublishData"] is False
    assert "hidden" not in video and "recorder" not in video and "roomAdmin" not in video


@pytest.mark.parametrize("role_id", ["host", "talent"])
def test_hosts_and_talent_may_publish(person, make_event, give_role, rooms, role_id):
    client, user_id = person(f"{role_id}@example.com")
    event_id = make_event()
    give_role(event_id, user_id, role_id)
    room_id, _ = rooms(event_id)["main"]

    video = _decode(_token(client, room_id).get_json()["token"])["video"]

    assert video["canPublish"] is True and video["canSubscribe"] is True and video["canPublishData"] is True


def test_account_owner_may_publish(person, make_org, make_event, rooms):
    client, user_id = person("olive@example.com")
    event_id = make_event(account_id=make_org(user_id))
    room_id, _ = rooms(event_id)["main"]

    claims = _decode(_token(client, room_id).get_json()["token"])

    assert claims["video"]["canPublish"] is True
    assert json.loads(claims["metadata"])["role_id"] == "owner"


def test_producer_joins_hidden_only_when_asking(person, make_event, give_role, rooms):
    client, user_id = person("pat@example.com")
    event_id = make_event()
    give_role(event_id, user_id, "producer")
    room_id, _ = rooms(event_id)["main"]

    hidden = _decode(_token(client, room_id, hidden="1").get_json()["token"])["video"]
    seen = _decode(_token(client, room_id).get_json()["token"])["video"]

    assert hidden["hidden"] is True and hidden["recorder"] is True
    assert hidden["canSubscribe"] is True and hidden["canPublish"] is False
    assert "hidden" not in seen and seen["canPublish"] is True


def test_hidden_join_needs_recording_control(person, make_event, give_role, rooms):
    client, user_id = person("hal@example.com")
    event_id = make_event()
    give_role(event_id, user_id, "host")
    room_id, _ = rooms(event_id)["main"]

    response = _token(client, room_id, hidden="1")

    assert response.status_code == 403 and "error" in response.get_json()


def test_room_scoped_grant_reaches_only_that_room(person, make_event, give_role, rooms):
    client, user_id = person("tess@example.com")
    event_id = make_event()
    by_kind = rooms(event_id)
    backstage_id, backstage_name = by_kind["backstage"]
    give_role(event_id, user_id, "talent", room_id=backstage_id)

    backstage = _token(client, backstage_id)
    main = _token(client, by_kind["main"][0])

    video = _decode(backstage.get_json()["token"])["video"]
    assert video["room"] == backstage_name and video["canPublish"] is True
    assert main.status_code == 403 and main.get_json()["error"]


def test_strangers_and_unknown_rooms_get_404(person, make_event, rooms):
    client, _ = person("sam@example.com")
    room_id, _ = rooms(make_event())["main"]

    stranger = _token(client, room_id)
    unknown = _token(client, "no-such-room")

    assert stranger.status_code == 404 and stranger.get_json()["error"]
    assert unknown.status_code == 404 and unknown.get_json()["error"]


def test_someone_elses_event_gives_404(person, make_event, give_role, rooms):
    client, user_id = person("una@example.com")
    give_role(make_event(), user_id, "host")
    other_room, _ = rooms(make_event(name="Other night"))["main"]

    assert _token(client, other_room).status_code == 404


def test_anonymous_is_sent_to_sign_in_or_told_401(lk_client, make_event, rooms):
    room_id, _ = rooms(make_event())["main"]

    page = lk_client.get(f"/rooms/{room_id}/token")
    script = lk_client.get(f"/rooms/{room_id}/token", headers={"Accept": "application/json"})

    assert page.status_code == 302 and "/auth/login" in page.headers["Location"]
    assert script.status_code == 401 and script.get_json()["error"]


def test_without_livekit_the_token_is_503(app, user_client, make_event, give_role, rooms):
    if app.extensions.get("livekit") is not None:
        pytest.skip("LIVEKIT_* is set in this environment")
    client, user_id = user_client
    event_id = make_event()
    give_role(event_id, user_id, "attendee")
    room_id, _ = rooms(event_id)["main"]

    response = _token(client, room_id)

    assert response.status_code == 503
    assert response.get_json() == {"error": "Video is not configured."}


def test_mint_token_takes_seconds_and_stays_in_its_room(lk_app):
    with lk_app.app_context():
        token = livekit.mint_token("user-9", name="Nine", room_name="room-9", ttl=60, can_publish=True,
                                   metadata={"user_id": "user-9"})
    claims = _decode(token)
    assert claims["exp"] - claims["nbf"] == 60
    assert claims["video"]["room"] == "room-9" and claims["video"]["canPublish"] is True
    assert json.loads(claims["metadata"]) == {"user_id": "user-9"}


# --- configuration -------------------------------------------------------------------

def _bare_app(**config):
    flask_app = Flask("livekit-config-test")
    flask_app.config.update(config)
    return flask_app


def test_websocket_url_serves_the_browser_and_http_the_api():
    flask_app = _bare_app(LIVEKIT_URL="wss://video.example.com/", LIVEKIT_API_KEY=KEY,
                          LIVEKIT_API_SECRET=SECRET)
    livekit.init_app(flask_app)
    config = flask_app.extensions["livekit"]
    assert config.api_url == "https://video.example.com"
    assert config.client_url == "wss://video.example.com"


def test_half_a_configuration_refuses_to_start():
    with pytest.raises(RuntimeError):
        livekit.init_app(_bare_app(LIVEKIT_URL="wss://video.example.com", LIVEKIT_API_KEY=KEY))
    unset = _bare_app()
    livekit.init_app(unset)
    assert unset.extensions["livekit"] is None


# --- participant control -----------------------------------------------------------------

def _assert_admin_for(call, room_name):
    assert call.grants["roomAdmin"] is True and call.grants["room"] == room_name


def test_update_permission_sends_the_permission_with_an_admin_token(lk_app, fake_livekit):
    fake_livekit.add_participant("room-a", "user-1", name="Ann")
    with lk_app.app_context():
        participant = livekit.update_participant_permission("room-a", "user-1", can_publish=True)

    [call] = fake_livekit.calls_to("UpdateParticipant")
    assert call.message.room == "room-a" and call.message.identity == "user-1"
    assert call.message.permission.can_publish is True
    assert call.message.permission.can_subscribe is True
    _assert_admin_for(call, "room-a")
    assert participant.identity == "user-1" and participant.can_publish is True

    with lk_app.app_context():
        livekit.update_participant_permission("room-a", "user-1", can_publish=False)
    assert fake_livekit.calls_to("UpdateParticipant")[1].message.permission.can_publish is False


def test_mute_remove_and_list(lk_app, fake_livekit):
    fake_livekit.add_participant("room-b", "user-2", name="Bo", tracks=["TR_mic"])
    fake_livekit.add_participant("room-b", "user-3", name="Cy")
    with lk_app.app_context():
        livekit.mute_track("room-b", "user-2", "TR_mic")
        livekit.remove_participant("room-b", "user-3")
        left = livekit.list_participants("room-b")

    [mute] = fake_livekit.calls_to("MutePublishedTrack")
    assert (mute.message.room, mute.message.identity, mute.message.track_sid, mute.message.muted) == \
        ("room-b", "user-2", "TR_mic", True)
    _assert_admin_for(mute, "room-b")
    [remove] = fake_livekit.calls_to("RemoveParticipant")
    assert (remove.message.room, remove.message.identity) == ("room-b", "user-3")
    _assert_admin_for(remove, "room-b")
    _assert_admin_for(fake_livekit.calls_to("ListParticipants")[0], "room-b")
    assert [(p.identity, p.name) for p in left] == [("user-2", "Bo")]
    assert left[0].joined_at is not None
    assert fake_livekit.rejected == []


def test_someone_not_in_the_room_is_not_found(lk_app, fake_livekit):
    with lk_app.app_context(), pytest.raises(livekit.ParticipantNotFound):
        livekit.remove_participant("room-c", "nobody")


def test_a_failing_livekit_is_unavailable(lk_app, fake_livekit):
    fake_livekit.add_participant("room-d", "user-4")
    fake_livekit.down = True
    with lk_app.app_context(), pytest.raises(livekit.LiveKitUnavailable) as caught:
        livekit.update_participant_permission("room-d", "user-4", can_publish=True)
    assert caught.value.status == 503 and "video service" in caught.value.message


def test_an_unreachable_livekit_is_unavailable(lk_app, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = livekit._Config(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", KEY, SECRET)
    monkeypatch.setitem(lk_app.extensions, "livekit", config)
    with lk_app.app_context(), pytest.raises(livekit.LiveKitUnavailable):
        livekit.list_participants("room-e")


def test_wrong_credentials_are_refused_and_unavailable(lk_app, fake_livekit, monkeypatch):
    good = lk_app.extensions["livekit"]
    monkeypatch.setitem(lk_app.extensions, "livekit",
                        livekit._Config(good.api_url, good.client_url, KEY, "another-secret-" + "x" * 32))
    with lk_app.app_context(), pytest.raises(livekit.LiveKitUnavailable):
        livekit.list_participants("room-f")
    assert fake_livekit.rejected and fake_livekit.calls == []


def test_without_livekit_calls_are_unavailable(app):
    if app.extensions.get("livekit") is not None:
        pytest.skip("LIVEKIT_* is set in this environment")
    with app.app_context(), pytest.raises(livekit.LiveKitUnavailable):
        livekit.remove_participant("room-g", "user-5")


# --- moderation of the room's video ------------------------------------------------------

def test_moderators_mute_a_microphone_and_remove_someone_from_the_video(person, make_event, give_role, rooms,
                                                                        fake_livekit):
    event_id = make_event()
    room_id, room_name = rooms(event_id)["main"]
    mod, mod_id = person("mo@example.com", name="Mo")
    fan, fan_id = person("fan@example.com", name="Fan")
    other_mod, other_mod_id = person("lee@example.com", name="Lee")
    give_role(event_id, mod_id, "moderator")
    give_role(event_id, other_mod_id, "moderator")
    give_role(event_id, fan_id, "talent")
    fake_livekit.add_participant(room_name, fan_id, name="Fan", tracks=["TR_cam"], audio_tracks=["TR_mic"])
    page = f"/rooms/{room_id}"

    muted = post(mod, f"{page}/video/mute", {"user_id": fan_id}, token_from=page, headers={"HX-Request": "true"})
    assert muted.status_code == 200 and "Their microphone is muted." in muted.get_data(as_text=True)
    [call] = fake_livekit.calls_to("MutePublishedTrack")
    assert (call.message.room, call.message.identity, call.message.track_sid, call.message.muted) == \
        (room_name, fan_id, "TR_mic", True)  # the microphone only, not the camera

    assert _token(fan, room_id).status_code == 200
    removed = post(mod, f"{page}/video/remove", {"user_id": fan_id}, token_from=page,
                   headers={"HX-Request": "true"})
    assert removed.status_code == 200 and "Fan is out of the video for 10 minutes." in removed.get_data(as_text=True)
    [call] = fake_livekit.calls_to("RemoveParticipant")
    assert (call.message.room, call.message.identity) == (room_name, fan_id)
    refused = _token(fan, room_id)
    assert refused.status_code == 403 and "removed you" in refused.get_json()["error"]

    # Moderators cannot act on each other; the others cannot moderate; strangers see nothing.
    assert post(mod, f"{page}/video/remove", {"user_id": other_mod_id}, token_from=page).status_code == 403
    assert post(fan, f"{page}/video/mute", {"user_id": mod_id}, token_from=page).status_code == 403
    stranger, _ = person("stranger@example.com")
    assert post(stranger, f"{page}/video/mute", {"user_id": fan_id}, token_from="/dashboard").status_code == 404
    assert post(mod, f"{page}/video/mute", {"user_id": "nobody"}, token_from=page).status_code == 422
    assert mod.post(f"{page}/video/mute", data={"user_id": fan_id}).status_code == 400  # no CSRF token
    assert _token(other_mod, room_id).status_code == 200
    assert len(fake_livekit.calls_to("RemoveParticipant")) == 1 and len(fake_livekit.calls_to("MutePublishedTrack")) == 1


def test_muting_someone_who_left_the_video_says_so(person, make_event, give_role, rooms):
    event_id = make_event()
    room_id, _ = rooms(event_id)["main"]
    mod, mod_id = person("mo@example.com")
    _, fan_id = person("fan@example.com")
    give_role(event_id, mod_id, "moderator")
    give_role(event_id, fan_id, "attendee")
    response = post(mod, f"/rooms/{room_id}/video/mute", {"user_id": fan_id}, token_from=f"/rooms/{room_id}")
    assert response.status_code == 404 and "not in the room any more" in response.get_data(as_text=True)


# --- webhooks -------------------------------------------------------------------------------

def _post_webhook(client, body, authorization="sign", **sign_options):
    headers = {}
    if authorization == "sign":
        headers["Authorization"] = signed_webhook(body, KEY, SECRET, **sign_options)
    elif authorization is not None:
        headers["Authorization"] = authorization
    return client.post("/webhooks/livekit", data=body, headers=headers, content_type="application/webhook+json")


def test_joins_and_leaves_are_kept_in_redis(lk_client):
    joined = _post_webhook(lk_client, webhook_event("participant_joined", "room-x", identity="user-1"))
    _post_webhook(lk_client, webhook_event("participant_joined", "room-x", identity="user-2"))

    assert joined.status_code == 200 and joined.get_json() == {"received": True}
    assert set(video_participants("room-x")) == {"user-1", "user-2"}

    left = _post_webhook(lk_client, webhook_event("participant_left", "room-x", identity="user-1"))

    assert left.status_code == 200
    assert set(video_participants("room-x")) == {"user-2"}


def test_a_replayed_event_acts_once(lk_client):
    join = webhook_event("participant_joined", "room-y", identity="user-1", event_id="EV_once")
    assert _post_webhook(lk_client, join).status_code == 200
    _post_webhook(lk_client, webhook_event("participant_left", "room-y", identity="user-1"))

    again = _post_webhook(lk_client, join)

    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert video_participants("room-y") == {}


def test_a_late_leave_of_an_earlier_session_keeps_the_person(lk_client):
    _post_webhook(lk_client, webhook_event("participant_joined", "room-z", identity="user-1",
                                           participant_sid="PA_new"))
    _post_webhook(lk_client, webhook_event("participant_left", "room-z", identity="user-1",
                                           participant_sid="PA_old"))

    assert set(video_participants("room-z")) == {"user-1"}


def test_room_started_and_finished(lk_client):
    _post_webhook(lk_client, webhook_event("room_started", "room-s"))
    _post_webhook(lk_client, webhook_event("participant_joined", "room-s", identity="user-1"))
    assert redis.get(started_key("room-s")) is not None

    _post_webhook(lk_client, webhook_event("room_finished", "room-s"))

    assert redis.get(started_key("room-s")) is None
    assert video_participants("room-s") == {}


def test_track_and_unknown_events_answer_200(lk_client):
    track = _post_webhook(lk_client, webhook_event("track_published", "room-t", identity="user-1",
                                                   track_sid="TR_1"))
    unknown = _post_webhook(lk_client, webhook_event("ingress_started", "room-t"))

    assert track.status_code == 200
    assert unknown.status_code == 200 and unknown.get_json()["ignored"] == "ingress_started"


def test_forged_tampered_missing_or_expired_signatures_are_401(lk_client):
    body = webhook_event("participant_joined", "room-w", identity="user-1")
    tampered = webhook_event("participant_joined", "room-w", identity="intruder")
    responses = [
        _post_webhook(lk_client, body, authorization=signed_webhook(body, KEY, "wrong-secret-" + "y" * 32)),
        _post_webhook(lk_client, body, authorization=signed_webhook(body, "APIotherkey", SECRET)),
        _post_webhook(lk_client, tampered, authorization=signed_webhook(body, KEY, SECRET)),
        _post_webhook(lk_client, body, authorization=None),
        _post_webhook(lk_client, body, authorization="not-a-jwt"),
        _post_webhook(lk_client, body, expires_in=-120),  # beyond the verifier's minute of leeway
    ]

    assert [r.status_code for r in responses] == [401] * 6
    assert all(r.get_json()["error"] for r in responses)
    assert video_participants("room-w") == {}


def test_signed_but_malformed_events_are_400(lk_client):
    for body in (b"not json", b"{}", json.dumps({"event": "participant_joined"}).encode(),
                 json.dumps({"event": "participant_joined", "id": "EV_x", "room": "oops"}).encode()):
        response = _post_webhook(lk_client, body)
        assert response.status_code == 400, body
        assert response.get_json()["error"]


def test_webhook_without_livekit_is_404(app, client):
    if app.extensions.get("livekit") is not None:
        pytest.skip("LIVEKIT_* is set in this environment")
    body = webhook_event("participant_joined", "room-v", identity="user-1")
    assert _post_webhook(client, body).status_code == 404


def test_calls_work_from_a_thread_whose_event_loop_is_running(lk_app, fake_livekit):
    """An async server (or a test driving a browser) already runs a loop in the thread."""
    fake_livekit.add_participant("room-c", "user-4", name="Di")
    found = {}

    async def from_inside_a_loop():
        with lk_app.app_context():
            found["participants"] = livekit.list_participants("room-c")

    # a thread of its own, so the loop is ours whatever else this test session runs
    thread = threading.Thread(target=asyncio.run, args=(from_inside_a_loop(),))
    thread.start()
    thread.join(30)
    assert [p.identity for p in found["participants"]] == ["user-4"]


def test_a_recording_of_a_room_marks_its_start_for_stage_offsets(lk_client, make_event, rooms):
    from app.rooms.stage import recording_started_key

    room_id, room_name = rooms(make_event())["main"]
    started_ns = 1_790_000_000 * 10**9 + 250_000_000
    egress = {"egressId": "EG_1", "roomName": room_name, "startedAt": str(started_ns)}

    def egress_webhook(kind):
        body = json.loads(webhook_event(kind, room_name))
        del body["room"]  # egress events name the room in egressInfo only
        return _post_webhook(lk_client, json.dumps({**body, "egressInfo": egress}).encode())

    assert egress_webhook("egress_started").status_code == 200
    assert redis.get(recording_started_key(room_id)).decode() == "2026-09-21T14:13:20.250000+00:00"
    assert egress_webhook("egress_ended").status_code == 200
    assert redis.get(recording_started_key(room_id)) is None


def test_moderators_see_video_controls_in_the_live_presence_list(lk_app):
    from app.rooms import services
    from app.rooms.live import Connection, Hub

    hub = Hub(lk_app, window=0.05)
    moderator, fan = RecordingSocket(), RecordingSocket()
    hub.add(Connection(moderator, "room-m", "u-mod", "Mo", can_moderate=True))
    hub.add(Connection(fan, "room-m", "u-fan", "Fan"))
    try:
        with lk_app.app_context():
            services.register_presence("room-m", "c-fan", "u-fan", "Fan")
        hub.dispatch(b"room:room-m", '{"type": "presence"}')
        deadline = time.monotonic() + 5
        while not (moderator.sent and fan.sent) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "Mute mic" in moderator.sent[0] and "/rooms/room-m/video/remove" in moderator.sent[0]
        assert "Fan" in fan.sent[0] and "Mute mic" not in fan.sent[0] and "video/remove" not in fan.sent[0]
        assert "csrf_token" not in moderator.sent[0]  # a broadcast carries nobody's token
    finally:
        hub.stop()
