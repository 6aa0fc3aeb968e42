"""Room chat through Twilio Conversations: the real twilio SDK against a fake
Conversations API, and Twilio's signed webhooks delivered back to our app."""
import json
import time

import pytest
from sqlalchemy import func, select

from app import create_app
from app.extensions import db, redis
from app.models import AccessGrant
from app.models.live import ChatMessage
from app.rooms import services
from app.rooms.live import Connection, hub_for
from tests.conftest import RecordingSocket, app_config, dispose_app, post, wait_for
from tests.fakes.smtp import free_port
from tests.fakes.twilio import FakeTwilioConversations

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f00dfeed" * 4
SERVICE_SID = "IS" + "fedcba9876543210" * 2
HX = {"HX-Request": "true"}
UNAVAILABLE = "Chat is unavailable right now"


@pytest.fixture(scope="module")
def twilio_server():
    server = FakeTwilioConversations(ACCOUNT_SID, AUTH_TOKEN, SERVICE_SID).start()
    yield server
    server.stop()


@pytest.fixture
def fake(twilio_server):
    """The fake Twilio with no conversations, no recorded calls and no queued webhooks."""
    twilio_server.reset()
    return twilio_server


CHAT_SETTINGS = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                 "TWILIO_CONVERSATIONS_SERVICE_SID": SERVICE_SID}


@pytest.fixture(scope="module")
def chat_app(app, base_dir, smtp_server, twilio_server):
    """The app with Twilio Conversations as its chat, pointed at the fake. `app` built the schema."""
    chat_app = create_app("testing", **app_config(base_dir, smtp_server.port, **CHAT_SETTINGS,
                                                  TWILIO_API_BASE_URL=twilio_server.url))
    yield chat_app
    dispose_app(chat_app)


@pytest.fixture
def make_chat_app(make_app):
    """Factory for a chat app with other settings (an unreachable Twilio, a proxy in front)."""
    return lambda **settings: make_app(**{**CHAT_SETTINGS, **settings})


@pytest.fixture
def member(chat_app, data_app, make_user, sign_in, room):
    """Factory: a client of the Twilio-mode app signed in with `role` on the event."""
    def make(role, email, an_app=None):
        user_id = make_user(email, name=email.split("@")[0].title())
        with data_app.app_context():
            db.session.add(AccessGrant(event_id=room["event_id"], user_id=user_id, role_id=role, source="manual"))
            db.session.commit()
        return sign_in(email, (an_app or chat_app).test_client()), user_id
    return make


@pytest.fixture
def webhook_client(chat_app):
    """Twilio's side of the webhook: no session, no CSRF token."""
    return chat_app.test_client()


def room_url(room_id, suffix=""):
    return f"/rooms/{room_id}{suffix}"


def send(client, room_id, body):
    return post(client, room_url(room_id, "/messages"), {"body": body}, token_from=room_url(room_id), headers=HX)


def stored():
    db.session.expire_all()
    return db.session.scalars(select(ChatMessage).order_by(ChatMessage.created_at)).all()


def message_posts(fake):
    return fake.calls("POST", "/Messages")


def sent_and_queued(fake, client, room_id, body="hello"):
    """Send through our app; returns the webhook Twilio queued for it (not yet delivered)."""
    response = send(client, room_id, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(fake.webhooks) == 1
    return dict(fake.webhooks[0])


# --- posting ---------------------------------------------------------------------

def test_message_goes_to_twilio_and_is_stored_only_when_the_webhook_brings_it(member, room, fake, webhook_client,
                                                                             ctx):
    fan, fan_id = member("attendee", "fan@example.com")
    response = send(fan, room["main"], "  hello <b>all</b>  ")
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert 'id="chat-form"' in fragment and "<html" not in fragment
    [created] = fake.calls("POST", "/Conversations")
    assert created.form == {"UniqueName": f"room-{room['main']}", "FriendlyName": "Main stage"}
    [posted] = message_posts(fake)
    assert posted.path == f"/v1/Services/{SERVICE_SID}/Conversations/room-{room['main']}/Messages"
    assert posted.form["Author"] == fan_id and posted.form["Body"] == "hello <b>all</b>"
    assert json.loads(posted.form["Attributes"]) == {"user_id": fan_id, "author_label": "Fan"}
    assert posted.webhook_enabled == "true"
    assert stored() == []

    [delivered] = fake.deliver_webhooks(webhook_client)
    assert delivered.status_code == 200 and delivered.get_json() == {"received": True}
    [message] = stored()
    assert (message.room_id, message.user_id, message.author_label, message.body) == (
        room["main"], fan_id, "Fan", "hello <b>all</b>")
    page = fan.get(room_url(room["main"])).get_data(as_text=True)
    assert "hello &lt;b&gt;all&lt;/b&gt;" in page and f'id="msg-{message.id}"' in page

    send(fan, room["main"], "again")
    assert len(fake.calls("POST", "/Conversations")) == 1  # the room's conversation is reused
    assert len(message_posts(fake)) == 2


def test_an_existing_conversation_is_used_not_duplicated(member, room, fake, webhook_client, ctx):
    fake.add_conversation(f"room-{room['main']}", "Made earlier")  # e.g. by another web process
    fan, _ = member("attendee", "fan@example.com")
    assert send(fan, room["main"], "hi").status_code == 200
    assert fake.calls("POST", "/Conversations")[0].form["UniqueName"] == f"room-{room['main']}"
    assert [m["body"] for m in fake.messages(f"room-{room['main']}")] == ["hi"]
    fake.deliver_webhooks(webhook_client)
    assert [m.body for m in stored()] == ["hi"]


def test_webhook_fans_the_message_out_to_the_rooms_sockets(member, room, fake, chat_app, webhook_client, ctx):
    hub = hub_for(chat_app)
    socket = RecordingSocket()
    hub.add(Connection(socket, room["main"], "someone", "Someone"))
    fan, _ = member("attendee", "fan@example.com")
    send(fan, room["main"], "live <i>now</i>")
    time.sleep(0.2)
    assert socket.sent == []  # Twilio has it; the room hears of it from the webhook
    fake.deliver_webhooks(webhook_client)
    assert wait_for(lambda: socket.sent)
    [message] = stored()
    fragment = socket.sent[0]
    assert 'hx-swap-oob="beforeend:#chat-messages"' in fragment and f'id="msg-{message.id}"' in fragment
    assert "live &lt;i&gt;now&lt;/i&gt;" in fragment


def test_a_replayed_webhook_stores_the_message_once(member, room, fake, webhook_client, ctx):
    fan, _ = member("attendee", "fan@example.com")
    params = sent_and_queued(fake, fan, room["main"], "once")
    assert fake.post_webhook(webhook_client, params).get_json() == {"received": True}
    again = fake.post_webhook(webhook_client, params)
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert [m.body for m in stored()] == ["once"]


def test_forged_or_tampered_webhooks_are_403_and_write_nothing(member, room, fake, webhook_client, ctx):
    fan, _ = member("attendee", "fan@example.com")
    params = sent_and_queued(fake, fan, room["main"], "genuine")
    assert fake.post_webhook(webhook_client, params, signature="Zm9yZ2Vk").status_code == 403
    signature = fake.sign("http://localhost/webhooks/twilio/conversations", params)
    tampered = dict(params, Body="something else")
    assert fake.post_webhook(webhook_client, tampered, signature=signature).status_code == 403
    other_url = fake.post_webhook(webhook_client, params, signature=fake.sign("http://localhost/other", params))
    assert other_url.status_code == 403
    no_header = webhook_client.post("/webhooks/twilio/conversations", data=params)
    assert no_header.status_code == 403
    assert stored() == []
    # The refusals used up nothing: Twilio's genuine delivery still lands.
    assert fake.post_webhook(webhook_client, params).status_code == 200
    assert [m.body for m in stored()] == ["genuine"]


def test_webhook_of_a_conversation_that_is_not_a_room_is_ignored(member, room, fake, webhook_client, ctx):
    fan, fan_id = member("attendee", "fan@example.com")
    params = sent_and_queued(fake, fan, room["main"])
    support = fake.add_conversation("support-desk")
    answer = fake.post_webhook(webhook_client, dict(params, ConversationSid=support["sid"],
                                                    MessageSid="IM" + "1" * 32))
    assert answer.status_code == 200 and answer.get_json()["ignored"] == "onMessageAdded"
    unknown = fake.post_webhook(webhook_client, dict(params, ConversationSid="CH" + "9" * 32,
                                                     MessageSid="IM" + "2" * 32))
    assert unknown.status_code == 200 and unknown.get_json()["ignored"] == "onMessageAdded"
    gone_room = fake.add_conversation("room-no-such-room")
    assert fake.post_webhook(webhook_client, dict(params, ConversationSid=gone_room["sid"],
                                                  MessageSid="IM" + "3" * 32)).status_code == 200
    other_event = fake.post_webhook(webhook_client, dict(params, EventType="onParticipantAdded"))
    assert other_event.status_code == 200 and other_event.get_json()["ignored"] == "onParticipantAdded"
    assert stored() == []


@pytest.mark.parametrize("missing", ["EventType", "MessageSid", "ConversationSid"])
def test_malformed_webhook_is_400(member, room, fake, webhook_client, ctx, missing):
    fan, _ = member("attendee", "fan@example.com")
    params = sent_and_queued(fake, fan, room["main"])
    del params[missing]
    assert fake.post_webhook(webhook_client, params).status_code == 400
    assert stored() == []


def test_webhook_is_404_when_chat_is_built_in(client, fake):
    params = {"EventType": "onMessageAdded", "ConversationSid": "CH" + "0" * 32, "MessageSid": "IM" + "0" * 32}
    assert fake.post_webhook(client, params).status_code == 404


def test_webhook_url_is_the_public_one_behind_a_proxy(make_chat_app, member, room, fake, twilio_server, ctx):
    proxied = make_chat_app(TWILIO_API_BASE_URL=twilio_server.url, PROXY_COUNT=1)
    fan, _ = member("attendee", "fan@example.com", an_app=proxied)
    params = sent_and_queued(fake, fan, room["main"], "via the proxy")
    public = "https://chat.example.com/webhooks/twilio/conversations"
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "chat.example.com",
               "X-Twilio-Signature": fake.sign(public, params)}
    response = proxied.test_client().post("/webhooks/twilio/conversations", data=params, headers=headers,
                                           base_url="http://10.0.0.7:8000")
    assert response.status_code == 200
    assert [m.body for m in stored()] == ["via the proxy"]


def test_webhook_url_is_the_configured_server_name(make_chat_app, member, room, fake, twilio_server, ctx):
    named = make_chat_app(TWILIO_API_BASE_URL=twilio_server.url, SERVER_NAME="chat.example.com",
                          PREFERRED_URL_SCHEME="https")
    fan, _ = member("attendee", "fan@example.com")
    params = sent_and_queued(fake, fan, room["main"], "named host")
    http_signature = fake.sign("http://chat.example.com/webhooks/twilio/conversations", params)
    assert fake.post_webhook(named.test_client(), params, base="http://chat.example.com",
                             signature=http_signature).status_code == 403
    response = fake.post_webhook(named.test_client(), params, base="http://chat.example.com",
                                 signature=fake.sign("https://chat.example.com/webhooks/twilio/conversations", params))
    assert response.status_code == 200
    assert [m.body for m in stored()] == ["named host"]


# --- the rules apply before Twilio hears of it --------------------------------------

@pytest.mark.parametrize("body, expected", [("   ", "Write something"), ("x" * 501, "at most 500")])
def test_empty_or_oversized_message_never_reaches_twilio(member, room, fake, body, expected):
    fan, _ = member("attendee", "fan@example.com")
    response = send(fan, room["main"], body)
    assert response.status_code == 422 and expected in response.get_data(as_text=True)
    assert fake.requests == []


def test_muted_user_never_reaches_twilio(member, room, fake):
    fan, fan_id = member("attendee", "fan@example.com")
    mod, _ = member("moderator", "mod@example.com")
    post(mod, room_url(room["main"], "/mutes"), {"user_id": fan_id}, token_from=room_url(room["main"]))
    response = send(fan, room["main"], "let me talk")
    assert response.status_code == 403 and "You are muted" in response.get_data(as_text=True)
    assert message_posts(fake) == []


def test_slow_mode_holds_the_second_message_back_from_twilio(member, room, fake):
    fan, _ = member("attendee", "fan@example.com")
    mod, _ = member("moderator", "mod@example.com")
    post(mod, room_url(room["main"], "/slow-mode"), {"seconds": "30"}, token_from=room_url(room["main"]))
    assert send(fan, room["main"], "first").status_code == 200
    second = send(fan, room["main"], "second")
    assert second.status_code == 429 and "send again in" in second.get_data(as_text=True)
    assert [c.form["Body"] for c in message_posts(fake)] == ["first"]


def test_viewer_cannot_send(member, room, fake):
    viewer, _ = member("viewer", "view@example.com")
    assert send(viewer, room["main"], "hi").status_code == 403
    assert fake.requests == []


# --- moderation ----------------------------------------------------------------------

def test_moderator_delete_removes_the_message_at_twilio(member, room, fake, webhook_client, ctx):
    fan, _ = member("attendee", "fan@example.com")
    mod, mod_id = member("moderator", "mod@example.com")
    send(fan, room["main"], "regrettable")
    fake.deliver_webhooks(webhook_client)
    [message] = stored()
    [twilio_message] = fake.messages(f"room-{room['main']}")
    pubsub = redis.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(services.channel(room["main"]))
    response = post(mod, room_url(room["main"], f"/messages/{message.id}/delete"),
                    token_from=room_url(room["main"]), headers=HX)
    assert response.status_code == 200
    [deleted] = fake.calls("DELETE")
    assert deleted.path.endswith(f"/Conversations/room-{room['main']}/Messages/{twilio_message['sid']}")
    assert fake.messages(f"room-{room['main']}") == []
    got = None
    deadline = time.monotonic() + 3
    while got is None and time.monotonic() < deadline:
        got = pubsub.get_message(timeout=0.2)
    pubsub.close()
    assert json.loads(got["data"]) == {"type": "chat_deleted", "message_id": message.id}
    [message] = stored()
    assert message.deleted_at is not None and message.deleted_by_id == mod_id
    assert "regrettable" not in fan.get(room_url(room["main"])).get_data(as_text=True)


def test_a_message_removed_at_twilio_leaves_the_room(member, room, fake, webhook_client, ctx):
    fan, _ = member("attendee", "fan@example.com")
    added = sent_and_queued(fake, fan, room["main"], "removed elsewhere")
    fake.deliver_webhooks(webhook_client)
    removed = dict(added, EventType="onMessageRemoved")
    assert fake.post_webhook(webhook_client, removed).get_json() == {"received": True}
    assert fake.post_webhook(webhook_client, removed).get_json()["duplicate"] is True
    [message] = stored()
    assert message.deleted_at is not None and message.deleted_by_id is None
    assert "removed elsewhere" not in fan.get(room_url(room["main"])).get_data(as_text=True)


# --- Twilio failing ------------------------------------------------------------------

def test_twilio_down_is_a_clear_503_and_the_slow_mode_turn_is_not_spent(member, room, fake, ctx):
    fan, fan_id = member("attendee", "fan@example.com")
    mod, _ = member("moderator", "mod@example.com")
    post(mod, room_url(room["main"], "/slow-mode"), {"seconds": "30"}, token_from=room_url(room["main"]))
    fake.down = True
    response = send(fan, room["main"], "anyone there?")
    assert response.status_code == 503
    html = response.get_data(as_text=True)
    assert UNAVAILABLE in html and 'id="chat-form"' in html and "anyone there?" in html
    assert stored() == []
    fake.down = False
    assert send(fan, room["main"], "anyone there?").status_code == 200


def test_twilio_unreachable_is_a_clear_503(make_chat_app, member, room, fake):
    closed = make_chat_app(TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}")
    fan, _ = member("attendee", "fan@example.com", an_app=closed)
    response = send(fan, room["main"], "hello?")
    assert response.status_code == 503 and UNAVAILABLE in response.get_data(as_text=True)


def test_delete_while_twilio_is_down_is_503_and_keeps_the_message(member, room, fake, webhook_client, ctx):
    fan, _ = member("attendee", "fan@example.com")
    mod, _ = member("moderator", "mod@example.com")
    send(fan, room["main"], "still here")
    fake.deliver_webhooks(webhook_client)
    [message] = stored()
    fake.down = True
    response = post(mod, room_url(room["main"], f"/messages/{message.id}/delete"),
                    token_from=room_url(room["main"]), headers=HX)
    assert response.status_code == 503 and UNAVAILABLE in response.get_data(as_text=True)
    assert stored()[0].deleted_at is None
    assert len(fake.messages(f"room-{room['main']}")) == 1


def test_webhook_lookup_failing_is_503_and_the_retry_still_lands(member, room, fake, webhook_client, ctx):
    fan, _ = member("attendee", "fan@example.com")
    params = sent_and_queued(fake, fan, room["main"], "retried")
    redis.flushdb()  # the conversation cache is gone: the webhook must ask Twilio
    fake.down = True
    assert fake.post_webhook(webhook_client, params).status_code == 503
    fake.down = False
    assert fake.post_webhook(webhook_client, params).status_code == 200
    assert db.session.scalar(select(func.count()).select_from(ChatMessage)) == 1
