"""Two people in the same room, in two browsers: each sees the other arrive and
reads the other's chat without reloading."""
import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import AccessGrant, Event
from app.rooms.live import hub_for
from tests.browser.conftest import screenshot
from tests.conftest import post


@pytest.fixture(scope="module", autouse=True)
def stop_hub(app):
    """The live server's sockets fed a hub thread; stop it before the session's Redis goes."""
    yield
    hub_for(app).stop()


@pytest.mark.browser
def test_host_and_fan_see_each_other_and_chat_live(new_page, browser_sign_in, make_user, make_event,
                                                   data_app):
    event_id = make_event()
    host_id = make_user("host@example.com", name="Hana Host")
    fan_id = make_user("fan@example.com", name="Finn Fan")
    with data_app.app_context():
        event = db.session.get(Event, event_id)
        room_id = event.main_room.id
        db.session.add_all([
            AccessGrant(event_id=event_id, user_id=host_id, role_id="host", source="manual"),
            AccessGrant(event_id=event_id, user_id=fan_id, role_id="attendee", source="manual")])
        db.session.commit()

    host = browser_sign_in(new_page(), "host@example.com")
    host.goto(f"/rooms/{room_id}")
    host_presence = host.get_by_test_id("presence")
    expect(host_presence).to_contain_text("Hana Host")
    expect(host.get_by_test_id("video-status")).to_have_text("Video is not configured")

    fan = browser_sign_in(new_page(), "fan@example.com")
    fan.goto(f"/rooms/{room_id}")
    expect(fan.get_by_test_id("presence")).to_contain_text("Hana Host")
    expect(fan.get_by_test_id("presence")).to_contain_text("Finn Fan")
    expect(host_presence).to_contain_text("Finn Fan")  # no reload on the host's side

    fan.get_by_label("Message").fill("Hello from the front row <3")
    fan.get_by_role("button", name="Send").click()
    expect(host.get_by_test_id("chat-messages")).to_contain_text("Hello from the front row <3")
    expect(fan.get_by_test_id("chat-messages")).to_contain_text("Hello from the front row <3")
    expect(fan.get_by_label("Message")).to_have_value("")

    host.get_by_label("Message").fill("Welcome, everyone")
    host.get_by_role("button", name="Send").click()
    expect(fan.get_by_test_id("chat-messages")).to_contain_text("Welcome, everyone")
    screenshot(host, "room-host")

    # The host deletes the fan's message; the socket removes it from both pages.
    host.get_by_test_id("chat-message").filter(has_text="front row").get_by_role("button", name="Delete").click()
    expect(fan.get_by_test_id("chat-messages")).not_to_contain_text("front row")
    expect(host.get_by_test_id("chat-messages")).not_to_contain_text("front row")

    fan.close()  # the fan leaves: the host's list updates
    expect(host_presence).not_to_contain_text("Finn Fan")


@pytest.mark.browser
def test_host_vets_a_fan_and_brings_them_on_stage_live(new_page, browser_sign_in, make_user, make_event,
                                                       data_app, app, sign_in):
    event_id = make_event()
    host_id = make_user("host@example.com", name="Hana Host")
    fan_id = make_user("vip@example.com", name="Vera Vip")
    with data_app.app_context():
        room_id = db.session.get(Event, event_id).main_room.id
        db.session.add_all([
            AccessGrant(event_id=event_id, user_id=host_id, role_id="host", source="manual"),
            AccessGrant(event_id=event_id, user_id=fan_id, role_id="vip", source="manual")])
        db.session.commit()

    fan = browser_sign_in(new_page(), "vip@example.com")
    fan.goto(f"/rooms/{room_id}")
    fan.get_by_role("button", name="Join the backstage queue").click()
    expect(fan.get_by_test_id("my-place")).to_contain_text("You are number 1 in the queue")

    host = browser_sign_in(new_page(), "host@example.com")
    host.goto(f"/rooms/{room_id}")
    expect(host.get_by_test_id("presence")).to_contain_text("Vera Vip")
    queue = host.get_by_test_id("stage-queue")
    expect(queue.get_by_test_id("queue-entry")).to_contain_text("Vera Vip")

    host.get_by_role("button", name="Vet the next person").click()
    expect(fan.get_by_test_id("my-place")).to_contain_text("A host is checking you in")  # no reload
    # While the host types, someone else joins the queue: the pushed panel keeps the text.
    host.get_by_label("Private message").fill("Hi Vera, can you hear me?")
    other_id = make_user("otto@example.com", name="Otto Other")
    with data_app.app_context():
        db.session.add(AccessGrant(event_id=event_id, user_id=other_id, role_id="vip", source="manual"))
        db.session.commit()
    otto = sign_in("otto@example.com", app.test_client())
    post(otto, f"/rooms/{room_id}/stage/queue", token_from=f"/rooms/{room_id}")
    expect(queue.get_by_test_id("queue-entry").filter(has_text="Otto Other")).to_have_count(1)
    expect(host.get_by_label("Private message")).to_have_value("Hi Vera, can you hear me?")
    host.get_by_role("button", name="Send privately").click()
    expect(fan.get_by_test_id("vet-messages")).to_contain_text("Hi Vera, can you hear me?")
    fan.get_by_label("Private message").fill("Yes, loud and clear")
    fan.get_by_role("button", name="Send privately").click()
    expect(host.get_by_test_id("vet-messages")).to_contain_text("Yes, loud and clear")
    screenshot(host, "stage-host-vetting")

    host.get_by_label("Note to Vera Vip").fill("Break a leg")
    host.get_by_role("button", name="Approve Vera Vip").click()
    expect(fan.get_by_test_id("stage-self")).to_contain_text("You are on stage now")
    expect(fan.get_by_test_id("stage-self")).to_contain_text("Everyone in the room sees you listed on stage")
    expect(fan.get_by_test_id("stage-people")).to_contain_text("Vera Vip")
    expect(host.get_by_test_id("stage-people")).to_contain_text("Vera Vip")
    screenshot(fan, "stage-fan-on-stage")

    fan.get_by_label("Message", exact=True).fill("Hello from the stage")
    fan.get_by_role("button", name="Send", exact=True).click()
    expect(host.get_by_test_id("chat-messages")).to_contain_text("Hello from the stage")

    host.get_by_role("button", name="Remove Vera Vip from stage").click()
    expect(fan.get_by_test_id("stage-self")).not_to_contain_text("You are on stage now")
    expect(fan.get_by_test_id("stage-people")).to_contain_text("Nobody is on stage")
