"""The live room: page access, chat and its moderation, presence in Redis, the socket
hub's fan-out across processes (a second app stands for a second web process), and
a real websocket against a live server."""
import json
import threading
import time
from datetime import timedelta

import pytest
from simple_websocket import Client, ConnectionError as Refused
from sqlalchemy import select
from werkzeug.serving import make_server

from app import create_app
from app.extensions import db, redis
from app.models import AccessGrant
from app.models.base import utcnow
from app.models.live import ChatMessage
from app.rooms import services
from app.rooms.live import SEND_TIMEOUT, Connection, Hub, hub_for
from app.rooms.routes import handle_frame, same_origin
from tests.conftest import RecordingSocket, app_config, csrf_token, post, wait_for

HX = {"HX-Request": "true"}


@pytest.fixture
def grant(data_app):
    def give(user_id, event_id, role_id, room_id=None):
        with data_app.app_context():
            db.session.add(AccessGrant(event_id=event_id, user_id=user_id, role_id=role_id,
                                       room_id=room_id, source="manual"))
            db.session.commit()
    return give


@pytest.fixture
def member(app, make_user, sign_in, grant, room):
    """Factory: a signed-in client holding `role` on the event (or one room of it)."""
    def make(role, email, room_id=None):
        user_id = make_user(email, name=email.split("@")[0].title())
        grant(user_id, room["event_id"], role, room_id)
        return sign_in(email, app.test_client()), user_id
    return make


def room_url(room_id, suffix=""):
    return f"/rooms/{room_id}{suffix}"


def send(client, room_id, body, htmx=True):
    return post(client, room_url(room_id, "/messages"), {"body": body}, token_from=room_url(room_id),
                headers=HX if htmx else {})


# --- the page ---------------------------------------------------------------------

def test_room_page_needs_sign_in(client, room):
    response = client.get(room_url(room["main"]))
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_stranger_gets_404_and_no_such_room_404(user_client, room):
    client, _ = user_client
    assert client.get(room_url(room["main"])).status_code == 404
    assert client.get(room_url("nope")).status_code == 404


def test_team_member_without_room_join_here_gets_403(member, room):
    client, _ = member("viewer", "side@example.com", room_id=room["backstage"])
    assert client.get(room_url(room["main"])).status_code == 403
    assert client.get(room_url(room["backstage"])).status_code == 200


def test_attendee_sees_stage_presence_chat_and_one_socket(member, room):
    client, _ = member("attendee", "fan@example.com")
    html = client.get(room_url(room["main"])).get_data(as_text=True)
    assert html.count("ws-connect=") == 1
    assert f'ws-connect="/rooms/{room["main"]}/socket"' in html
    assert 'id="presence"' in html and 'id="chat-messages"' in html and 'id="chat-form"' in html
    assert "Video is not configured" in html
    assert "Moderation" not in html


def test_viewer_reads_chat_but_has_no_form(member, room):
    client, _ = member("viewer", "view@example.com")
    html = client.get(room_url(room["main"])).get_data(as_text=True)
    assert 'id="chat-messages"' in html and 'id="chat-form"' not in html


# --- chat -------------------------------------------------------------------------

def test_send_message_saves_escapes_and_broadcasts(member, room, ctx):
    client, user_id = member("attendee", "fan@example.com")
    pubsub = redis.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(services.channel(room["main"]))
    response = send(client, room["main"], "  <script>alert(1)</script> hi  ")
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert 'id="chat-form"' in fragment and "<html" not in fragment
    saved = db.session.scalars(select(ChatMessage)).one()
    assert (saved.body, saved.user_id, saved.author_label) == ("<script>alert(1)</script> hi", user_id, "Fan")
    page = client.get(room_url(room["main"])).get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; hi" in page and "<script>alert(1)" not in page
    published = None
    deadline = time.monotonic() + 3
    while published is None and time.monotonic() < deadline:
        published = pubsub.get_message(timeout=0.2)
    pubsub.close()
    assert json.loads(published["data"])["message"]["id"] == saved.id


def test_send_without_js_redirects_to_the_room(member, room):
    client, _ = member("attendee", "fan@example.com")
    response = send(client, room["main"], "hello", htmx=False)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/rooms/{room['main']}#chat")


@pytest.mark.parametrize("body, expected", [("   ", "Write something"), ("x" * 501, "at most 500")])
def test_empty_or_oversized_message_is_422_with_the_reason(member, room, ctx, body, expected):
    client, _ = member("attendee", "fan@example.com")
    response = send(client, room["main"], body)
    assert response.status_code == 422
    assert expected in response.get_data(as_text=True)
    assert 'id="chat-form"' in response.get_data(as_text=True)
    assert db.session.scalar(select(ChatMessage)) is None
    page = send(client, room["main"], body, htmx=False)
    assert page.status_code == 422 and "<html" in page.get_data(as_text=True)


def test_exactly_500_characters_is_accepted(member, room):
    client, _ = member("attendee", "fan@example.com")
    assert send(client, room["main"], "y" * 500).status_code == 200


def test_viewer_cannot_send(member, room):
    client, _ = member("viewer", "view@example.com")
    assert send(client, room["main"], "hi").status_code == 403


def test_flood_is_limited_per_user_per_room(member, room):
    client, _ = member("attendee", "fan@example.com")
    token = csrf_token(client, room_url(room["main"]))
    codes = [client.post(room_url(room["main"], "/messages"), data={"body": f"m{i}", "csrf_token": token},
                         headers=HX).status_code for i in range(11)]
    assert codes[:10] == [200] * 10
    assert codes[10] == 429
    other, _ = member("attendee", "other@example.com")
    assert send(other, room["main"], "still fine").status_code == 200


def test_muted_user_gets_403(member, room, ctx):
    fan, fan_id = member("attendee", "fan@example.com")
    mod, _ = member("moderator", "mod@example.com")
    response = post(mod, room_url(room["main"], "/mutes"), {"user_id": fan_id}, token_from=room_url(room["main"]),
                    headers=HX)
    assert response.status_code == 200 and "Muted" in response.get_data(as_text=True)
    refused = send(fan, room["main"], "let me talk")
    assert refused.status_code == 403 and "You are muted" in refused.get_data(as_text=True)
    assert 0 < redis.ttl(f"chat:mute:{room['main']}:{fan_id}") <= services.MUTE_SECONDS
    post(mod, room_url(room["main"], "/mutes"), {"user_id": fan_id, "action": "unmute"},
         token_from=room_url(room["main"]))
    assert send(fan, room["main"], "back").status_code == 200


def test_slow_mode_makes_fast_senders_wait(member, room):
    fan, _ = member("attendee", "fan@example.com")
    mod, _ = member("moderator", "mod@example.com")
    assert post(mod, room_url(room["main"], "/slow-mode"), {"seconds": "30"},
                token_from=room_url(room["main"])).status_code == 302
    assert send(fan, room["main"], "first").status_code == 200
    second = send(fan, room["main"], "second")
    assert second.status_code == 429
    assert "send again in" in second.get_data(as_text=True)
    post(mod, room_url(room["main"], "/slow-mode"), {"seconds": "0"}, token_from=room_url(room["main"]))
    assert send(fan, room["main"], "third").status_code == 200


def test_moderation_routes_refuse_non_moderators(member, room, ctx):
    fan, fan_id = member("attendee", "fan@example.com")
    send(fan, room["main"], "mine")
    message_id = db.session.scalar(select(ChatMessage.id))
    token = room_url(room["main"])
    assert post(fan, room_url(room["main"], f"/messages/{message_id}/delete"), token_from=token).status_code == 403
    assert post(fan, room_url(room["main"], "/mutes"), {"user_id": fan_id}, token_from=token).status_code == 403
    assert post(fan, room_url(room["main"], "/slow-mode"), {"seconds": "5"}, token_from=token).status_code == 403


def test_moderator_deletes_softly_and_broadcasts_removal(member, room, ctx):
    fan, _ = member("attendee", "fan@example.com")
    mod, mod_id = member("moderator", "mod@example.com")
    send(fan, room["main"], "regrettable")
    message_id = db.session.scalar(select(ChatMessage.id))
    page = mod.get(room_url(room["main"])).get_data(as_text=True)
    assert f"/messages/{message_id}/delete" in page
    pubsub = redis.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(services.channel(room["main"]))
    response = post(mod, room_url(room["main"], f"/messages/{message_id}/delete"),
                    token_from=room_url(room["main"]), headers=HX)
    assert response.status_code == 200
    got = None
    deadline = time.monotonic() + 3
    while got is None and time.monotonic() < deadline:
        got = pubsub.get_message(timeout=0.2)
    pubsub.close()
    assert json.loads(got["data"]) == {"type": "chat_deleted", "message_id": message_id}
    db.session.expire_all()
    message = db.session.get(ChatMessage, message_id)
    assert message.deleted_at is not None and message.deleted_by_id == mod_id
    assert "regrettable" not in fan.get(room_url(room["main"])).get_data(as_text=True)


def test_delete_of_another_rooms_message_is_404(member, room, ctx):
    mod, _ = member("moderator", "mod@example.com")
    db.session.add(ChatMessage(room_id=room["backstage"], user_id="x", author_label="X", body="elsewhere"))
    db.session.commit()
    message_id = db.session.scalar(select(ChatMessage.id))
    response = post(mod, room_url(room["main"], f"/messages/{message_id}/delete"), token_from=room_url(room["main"]))
    assert response.status_code == 404


def test_history_shows_latest_50_and_pages_older_by_keyset(member, room, ctx):
    client, _ = member("attendee", "fan@example.com")
    start = utcnow() - timedelta(hours=1)
    for i in range(60):
        db.session.add(ChatMessage(room_id=room["main"], user_id="u", author_label="U",
                                   body=f"message {i:02d}", created_at=start + timedelta(seconds=i)))
    db.session.commit()
    page = client.get(room_url(room["main"])).get_data(as_text=True)
    assert "message 10" in page and "message 59" in page and "message 09" not in page
    assert page.index("message 10") < page.index("message 59")
    oldest_shown = db.session.scalar(select(ChatMessage.id).where(ChatMessage.body == "message 10"))
    assert f"before={oldest_shown}" in page
    older = client.get(room_url(room["main"], f"/messages?before={oldest_shown}"), headers=HX)
    html = older.get_data(as_text=True)
    assert older.status_code == 200 and "<html" not in html
    assert "message 00" in html and "message 09" in html and "message 10" not in html
    assert "Older messages" not in html
    no_js = client.get(room_url(room["main"]) + f"?before={oldest_shown}").get_data(as_text=True)
    assert "message 00" in no_js and "message 10" not in no_js


# --- presence in Redis --------------------------------------------------------------

def test_presence_register_heartbeat_expiry_and_removal(ctx):
    services.register_presence("r1", "c1", "u1", "Ann", ttl=1)
    services.register_presence("r1", "c2", "u2", "bob", ttl=60)
    services.register_presence("r1", "c3", "u2", "bob", ttl=60)  # a second tab: listed once
    assert [p["label"] for p in services.list_presence("r1")] == ["Ann", "bob"]
    time.sleep(0.6)
    services.heartbeat_presence("r1", "c1", "u1", "Ann", ttl=1)
    time.sleep(0.6)
    assert [p["label"] for p in services.list_presence("r1")] == ["Ann", "bob"]
    time.sleep(1.0)  # no heartbeat: Ann's socket expires on its own
    assert [p["label"] for p in services.list_presence("r1")] == ["bob"]
    services.remove_presence("r1", "c2")
    assert [p["label"] for p in services.list_presence("r1")] == ["bob"]
    services.remove_presence("r1", "c3")
    assert services.list_presence("r1") == []
    assert redis.zcard("presence:r1") == 0


@pytest.fixture
def second_process(base_dir, smtp_server):
    """Another app on the same Redis and databases: what a second web process sees."""
    other = create_app("testing", **app_config(base_dir, smtp_server.port))
    yield other
    hub_for(other).stop()


def test_message_published_in_one_process_reaches_sockets_of_another(app, second_process, ctx):
    hub = hub_for(second_process)
    socket = RecordingSocket()
    hub.add(Connection(socket, "room-x", "u1", "Ann"))
    moderator_socket = RecordingSocket()
    hub.add(Connection(moderator_socket, "room-x", "u2", "Mo", can_moderate=True))
    message = ChatMessage(id="m" * 32, room_id="room-x", user_id="u3", author_label="<b>Zed</b>",
                          body="hello <i>there</i>", created_at=utcnow())
    services.announce_message(message)  # from this test's app: "process one"
    assert wait_for(lambda: socket.sent and moderator_socket.sent)
    fragment = socket.sent[0]
    assert 'hx-swap-oob="beforeend:#chat-messages"' in fragment and f'id="msg-{"m" * 32}"' in fragment
    assert "hello &lt;i&gt;there&lt;/i&gt;" in fragment and "&lt;b&gt;Zed&lt;/b&gt;" in fragment
    assert "Delete" not in fragment and "Delete" in moderator_socket.sent[0]
    services.publish("room-x", "chat_deleted", message_id="m" * 32)
    assert wait_for(lambda: len(socket.sent) == 2)
    assert socket.sent[1] == f'<div id="msg-{"m" * 32}" hx-swap-oob="delete"></div>'
    services.publish("room-y", "chat_deleted", message_id="other")  # a room with no socket here
    time.sleep(0.2)
    assert len(socket.sent) == 2


def test_presence_changes_are_coalesced_into_one_render_per_socket(second_process, ctx):
    hub = Hub(second_process, window=0.3)
    sockets = [RecordingSocket() for _ in range(3)]
    for i, socket in enumerate(sockets):
        hub.add(Connection(socket, "room-c", f"u{i}", f"User {i}"))
    try:
        for i in range(30):  # a reconnect storm
            services.register_presence("room-c", f"c{i}", f"u{i}", f"User {i}")
            hub.dispatch(b"room:room-c", json.dumps({"type": "presence"}))
        assert wait_for(lambda: all(s.sent for s in sockets))
        time.sleep(0.5)
        assert [len(s.sent) for s in sockets] == [1, 1, 1]
        assert hub.presence_renders == 1
        assert '<ul id="presence"' in sockets[0].sent[0] and 'hx-swap-oob="true"' in sockets[0].sent[0]
        assert "User 29" in sockets[0].sent[0]
    finally:
        hub.stop()


def test_malformed_hub_messages_and_client_frames_are_ignored(second_process):
    hub = Hub(second_process, window=0.05)
    socket = RecordingSocket()
    connection = Connection(socket, "room-m", "u1", "Ann")
    hub.add(connection)
    try:
        hub.dispatch(b"room:room-m", b"not json")
        hub.dispatch(b"room:room-m", json.dumps({"no": "type"}))
        hub.dispatch(b"nocolon", b"{}")
        hub.dispatch(b"room:room-m", json.dumps({"type": "chat"}))  # missing message: logged, not raised
        for frame in ("garbage", "[1, 2]", "null", json.dumps({"type": "unknown"})):
            handle_frame(connection, frame)
        assert socket.sent == []
        handle_frame(connection, json.dumps({"type": "ping"}))
        assert socket.sent == ["<!-- pong -->"]
        hub.dispatch(b"room:room-m", json.dumps({"type": "presence"}))
        assert wait_for(lambda: len(socket.sent) == 2)  # still served afterwards
    finally:
        hub.stop()


def test_a_failing_socket_does_not_stop_the_others(second_process):
    class Broken:
        def send(self, text):
            raise OSError("gone")

    hub = Hub(second_process, window=0.05)
    good = RecordingSocket()
    hub.add(Connection(Broken(), "room-b", "u1", "Ann"))
    hub.add(Connection(good, "room-b", "u2", "Bob"))
    try:
        hub.broadcast("room-b", "<p id='x'></p>")
        assert wait_for(lambda: good.sent == ["<p id='x'></p>"] and len(hub.local("room-b")) == 1)
        hub.broadcast("room-b", "<p id='y'></p>")  # the broken socket is gone; the good one goes on
        assert wait_for(lambda: good.sent == ["<p id='x'></p>", "<p id='y'></p>"])
    finally:
        hub.stop()


def test_same_origin():
    assert same_origin("http://127.0.0.1:5000", "127.0.0.1:5000")
    assert not same_origin("http://evil.example", "127.0.0.1:5000")
    assert not same_origin(None, "127.0.0.1:5000")


# --- a real websocket against a live server ------------------------------------------

@pytest.fixture
def live_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)
    hub_for(app).stop()


# simple-websocket's client sends "Host: 127.0.0.1" without the port (a browser
# includes it), so the matching Origin here has no port either.
SAME_ORIGIN = "http://127.0.0.1"


def session_cookie(client):
    return f"session={client.get_cookie('session').value}"


def receive_until(ws, needle, timeout=5.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        frame = ws.receive(timeout=0.5)
        if frame:
            seen.append(frame)
            if needle in frame:
                return frame
    raise AssertionError(f"{needle!r} never arrived; got {seen!r}")


def test_socket_pushes_presence_and_chat_and_cleans_up(member, room, live_url, ctx):
    fan, fan_id = member("attendee", "fan@example.com")
    host, _ = member("moderator", "host@example.com")
    url = f"ws://{live_url}/rooms/{room['main']}/socket"
    fan_ws = Client.connect(url, headers={"Cookie": session_cookie(fan), "Origin": SAME_ORIGIN})
    try:
        frame = receive_until(fan_ws, "Fan")
        assert '<ul id="presence"' in frame and 'hx-swap-oob="true"' in frame
        host_ws = Client.connect(url, headers={"Cookie": session_cookie(host), "Origin": SAME_ORIGIN})
        receive_until(fan_ws, "Host")  # the fan sees the host arrive
        fan_ws.send("this is not json {")  # ignored; the socket stays up for everyone
        send(host, room["main"], "welcome <all>")
        assert "welcome &lt;all&gt;" in receive_until(fan_ws, "welcome")
        host_ws.close()
        assert wait_for(lambda: "Host" not in receive_until(fan_ws, 'id="presence"'), timeout=5)
    finally:
        fan_ws.close()
    assert wait_for(lambda: services.list_presence(room["main"]) == [])


def test_socket_refuses_another_origin(member, room, live_url):
    fan, _ = member("attendee", "fan@example.com")
    with pytest.raises(Refused, match="403"):
        Client.connect(f"ws://{live_url}/rooms/{room['main']}/socket",
                       headers={"Cookie": session_cookie(fan), "Origin": "http://evil.example"})
    with pytest.raises(Refused, match="403"):  # no Origin: not a browser on our page
        Client.connect(f"ws://{live_url}/rooms/{room['main']}/socket", headers={"Cookie": session_cookie(fan)})


def test_socket_refuses_without_room_join(member, user_client, room, live_url):
    stranger, _ = user_client
    side, _ = member("viewer", "side@example.com", room_id=room["backstage"])
    for client, status in ((stranger, "404"), (side, "403")):
        with pytest.raises(Refused, match=status):
            Client.connect(f"ws://{live_url}/rooms/{room['main']}/socket",
                           headers={"Cookie": session_cookie(client), "Origin": SAME_ORIGIN})
    with pytest.raises(Refused, match="401"):  # not signed in at all
        Client.connect(f"ws://{live_url}/rooms/{room['main']}/socket", headers={"Origin": SAME_ORIGIN})


def test_a_reconnected_socket_catches_up_on_chat_and_the_stage(member, room, live_url, ctx):
    fan, _ = member("attendee", "fan@example.com")
    host, _ = member("moderator", "host@example.com")
    send(host, room["main"], "before the drop")
    seen = db.session.scalar(select(ChatMessage.id).where(ChatMessage.body == "before the drop"))
    send(host, room["main"], "while you were away <3")  # the fan's socket was down
    url = f"ws://{live_url}/rooms/{room['main']}/socket"
    fan_ws = Client.connect(url, headers={"Cookie": session_cookie(fan), "Origin": SAME_ORIGIN})
    try:
        fan_ws.send(json.dumps({"type": "catch_up", "last_message_id": seen}))
        frame = receive_until(fan_ws, "while you were away")
        assert '<div id="chat-messages"' in frame and 'hx-swap-oob="true"' in frame
        assert "while you were away &lt;3" in frame and "before the drop" in frame
        assert 'id="stage-people"' in receive_until(fan_ws, 'id="stage-people"')
        # Up to date already: no chat in the answer, the stage only.
        latest = db.session.scalar(select(ChatMessage.id).where(ChatMessage.body == "while you were away <3"))
        fan_ws.send(json.dumps({"type": "catch_up", "last_message_id": latest}))
        frame = receive_until(fan_ws, 'id="stage-people"')
        assert "chat-messages" not in frame
        fan_ws.send(json.dumps({"type": "catch_up", "last_message_id": {"not": "an id"}}))  # odd but harmless
        receive_until(fan_ws, 'id="stage-people"')
    finally:
        fan_ws.close()


def test_a_client_that_stops_reading_is_dropped_without_holding_up_the_others(member, room, live_url, ctx):
    """A client whose buffers are full must not stall the rest of the room, and its
    socket is closed after SEND_TIMEOUT."""
    import base64
    import os
    import socket

    fan, _ = member("attendee", "fan@example.com")
    stalled_user, stalled_id = member("attendee", "stalled@example.com")
    host_name, port = live_url.split(":")
    stalled = socket.create_connection((host_name, int(port)))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it fills up at once
    key = base64.b64encode(os.urandom(16)).decode()
    stalled.sendall((f"GET /rooms/{room['main']}/socket HTTP/1.1\r\nHost: {host_name}\r\n"
                     f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     f"Sec-WebSocket-Version: 13\r\nOrigin: {SAME_ORIGIN}\r\n"
                     f"Cookie: {session_cookie(stalled_user)}\r\n\r\n").encode())
    assert stalled.recv(12) == b"HTTP/1.1 101"  # upgraded; from now on it reads nothing
    reader = Client.connect(f"ws://{live_url}/rooms/{room['main']}/socket",
                            headers={"Cookie": session_cookie(fan), "Origin": SAME_ORIGIN})
    try:
        assert wait_for(lambda: {p["user_id"] for p in services.list_presence(room["main"])} >= {stalled_id})
        started = time.monotonic()
        for i in range(80):  # 8 MB: far beyond what the stalled socket's buffers hold
            services.publish(room["main"], "chat", message={
                "id": f"m{i}", "user_id": "someone", "author_label": "Host", "body": f"line {i} " + "x" * 100_000,
                "created_at": utcnow().isoformat()})
        receive_until(fan_ws := reader, "line 79 ", timeout=30)
        # Not held up by the stalled socket's send timeout: its queue is its own.
        assert time.monotonic() - started < SEND_TIMEOUT
        # The stalled client was disconnected and left the room.
        assert wait_for(lambda: stalled_id not in {p["user_id"] for p in services.list_presence(room["main"])},
                        timeout=10)
        assert fan_ws.connected
    finally:
        reader.close()
        stalled.close()


def test_a_big_room_names_the_first_hundred_and_counts_everyone(member, room):
    fan, _ = member("attendee", "fan@example.com")
    for i in range(105):
        services.register_presence(room["main"], f"conn-{i:03d}", f"user-{i:03d}", f"Person {i:03d}")
    page = fan.get(room_url(room["main"])).get_data(as_text=True)
    listed = page.split('id="presence"', 1)[1].split("</ul>", 1)[0]
    assert 'data-count="105"' in listed and listed.count("data-user-id=") == 100
    assert "Person 000" in listed and "Person 099" in listed and "Person 100" not in listed
    assert "and 5 more" in listed
