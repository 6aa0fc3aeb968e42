"""The LiveKit glue (static/js/livekit.js) in a real browser: the room page fetches
a token from our server and presents it to the LiveKit URL. The fake LiveKit has no
media server; it records the token each browser joined with and refuses the socket,
so the page must say video is unreachable and keep the rest of the room working."""
import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import AccessGrant, Event
from app.rooms.live import hub_for
from tests.browser.conftest import LiveServer, close_redis_connections


@pytest.fixture(scope="module")
def video_server(lk_app):
    """The LiveKit-configured app, served like the session's."""
    server = LiveServer(lk_app).start()
    yield server
    server.stop()
    hub_for(lk_app).stop()
    close_redis_connections(lk_app)


@pytest.fixture
def video_page(browser, video_server):
    contexts = []

    def make():
        context = browser.new_context(base_url=video_server.url, viewport={"width": 1200, "height": 800})
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def joined_as(fake_livekit, identity):
    return [claims for claims in fake_livekit.joins if claims["sub"] == identity]


@pytest.mark.browser
def test_the_room_page_joins_livekit_with_its_own_grants(video_page, browser_sign_in, make_user, make_event,
                                                         data_app, fake_livekit):
    event_id = make_event()
    host_id = make_user("host@example.com", name="Hana Host")
    fan_id = make_user("fan@example.com", name="Finn Fan")
    with data_app.app_context():
        event = db.session.get(Event, event_id)
        room_id, room_name = event.main_room.id, event.main_room.livekit_room_name
        db.session.add_all([
            AccessGrant(event_id=event_id, user_id=host_id, role_id="host", source="manual"),
            AccessGrant(event_id=event_id, user_id=fan_id, role_id="attendee", source="manual")])
        db.session.commit()

    fan = browser_sign_in(video_page(), "fan@example.com")
    fan.goto(f"/rooms/{room_id}")
    # No media server behind the fake: the page says so instead of failing silently...
    expect(fan.get_by_test_id("video-status")).to_contain_text("Could not reach the video server")
    # ...after presenting the token our server minted: this room, watch only.
    [grants, *_] = [claims["video"] for claims in joined_as(fake_livekit, fan_id)]
    assert grants["room"] == room_name and grants["roomJoin"] is True
    assert grants.get("canSubscribe") is True and grants.get("canPublish") is False

    host = browser_sign_in(video_page(), "host@example.com")
    host.goto(f"/rooms/{room_id}")
    expect(host.get_by_test_id("video-status")).to_contain_text("Could not reach the video server")
    [grants, *_] = [claims["video"] for claims in joined_as(fake_livekit, host_id)]
    assert grants["room"] == room_name and grants.get("canPublish") is True
    # The rest of the room works without video.
    expect(host.get_by_test_id("presence")).to_contain_text("Finn Fan")

    # The host (a moderator) mutes the fan's microphone from the presence list.
    fake_livekit.add_participant(room_name, fan_id, name="Finn Fan", audio_tracks=["TR_finn_mic"])
    host.get_by_role("button", name="Mute Finn Fan's microphone").click()
    expect(host.locator("#moderation-note")).to_have_text("Their microphone is muted.")
    [call] = fake_livekit.calls_to("MutePublishedTrack")
    assert (call.message.identity, call.message.track_sid, call.message.muted) == (fan_id, "TR_finn_mic", True)
    expect(fan.get_by_role("button", name="Mute Hana Host's microphone")).to_have_count(0)
