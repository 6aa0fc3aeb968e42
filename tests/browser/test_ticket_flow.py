"""A ticket from search to the door, in a real browser: a visitor finds an event,
takes a free ticket and sees its QR code; the organiser checks that ticket in, and
a second check-in shows when (and by whom) it was first used."""
import re
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.models import Ticket
from tests.browser.conftest import screenshot


@pytest.mark.browser
def test_find_an_event_take_a_ticket_and_get_checked_in_once(
        new_page, browser_sign_in, make_user, make_org, make_event, make_ticket_type, ctx):
    organiser_id = make_user("olive@example.com", name="Olive Organiser")
    event_id = make_event(account_id=make_org(organiser_id, name="Olive Live"), name="Moonlight Jazz Session",
                          timezone="Europe/Lisbon")
    make_ticket_type(event_id, name="General admission")
    make_event(name="Daylight Poetry")  # search has something to leave out
    make_user("vera@example.com", name="Vera Visitor")

    # The visitor searches, opens the event and takes a free ticket.
    visitor = browser_sign_in(new_page(), "vera@example.com")
    visitor.goto("/events")
    visitor.get_by_label("Search").fill("moonlight")
    visitor.get_by_role("button", name="Search").click()
    results = visitor.get_by_test_id("event-card")
    expect(results).to_have_count(1)
    results.get_by_role("link", name="Moonlight Jazz Session").click()
    expect(visitor.get_by_role("heading", name="Moonlight Jazz Session")).to_be_visible()
    visitor.get_by_role("button", name="Get tickets").click()
    visitor.get_by_role("button", name="Get my ticket").click()
    expect(visitor.get_by_role("heading", name="You're in!")).to_be_visible()

    # Her ticket: the QR code is drawn (an image the browser loaded), the code under it.
    visitor.get_by_role("link", name="Show ticket and QR code").click()
    expect(visitor).to_have_url(re.compile(r"/tickets/[0-9a-f]{32}$"))
    expect(visitor.get_by_test_id("ticket-holder")).to_have_text("Vera Visitor")
    qr = visitor.get_by_test_id("ticket-qr")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    code = visitor.get_by_test_id("ticket-code").inner_text()
    assert code == db.session.scalar(select(Ticket.code))
    expect(visitor.get_by_role("link", name="Download PDF")).to_be_visible()
    expect(visitor.get_by_role("link", name="Add to calendar")).to_be_visible()
    screenshot(visitor, "ticket")

    # The organiser opens the door page and types the code.
    door = browser_sign_in(new_page(), "olive@example.com")
    door.goto(f"/manage/events/{event_id}/checkin")
    counts = door.get_by_test_id("checkin-total")
    expect(counts).to_contain_text("0 / 1")
    # Camera scanning where the browser can read QR codes, else it says to type.
    expect(door.locator("#scan-start:visible, #scan-note:visible")).to_have_count(1)
    field = door.get_by_label("Ticket code")
    expect(field).to_be_focused()
    field.fill(code)
    door.get_by_role("button", name="Check in").click()
    result = door.get_by_test_id("checkin-result")
    expect(result).to_have_text("Checked in: Vera Visitor, General admission")
    expect(field).to_have_value("")
    expect(field).to_be_focused()  # ready for the next person
    expect(counts).to_contain_text("1 / 1")

    # The same code again: refused, with the first check-in's time and who did it.
    field.fill(code)
    field.press("Enter")
    db.session.expire_all()
    first = db.session.scalar(select(Ticket.checked_in_at)).astimezone(ZoneInfo("Europe/Lisbon"))
    expect(result).to_contain_text(
        f"Already checked in at {first:%H:%M:%S} (Europe/Lisbon) on {first:%d %b} by Olive Organiser.")
    expect(counts).to_contain_text("1 / 1")
    screenshot(door, "checkin-twice")

    # The visitor's ticket now says it was used.
    visitor.reload()
    expect(visitor.get_by_test_id("ticket-status")).to_contain_text("checked in")


@pytest.mark.browser
def test_the_last_seat_goes_to_one_buyer_and_the_other_is_offered_the_waitlist_in_place(
        new_page, browser_sign_in, make_user, make_event, make_ticket_type, ctx):
    event_id = make_event(name="Harbour Lights")
    make_ticket_type(event_id, name="Standing", capacity=1)
    make_user("ana@example.com", name="Ana")
    make_user("ben@example.com", name="Ben")
    ana = browser_sign_in(new_page(), "ana@example.com")
    ben = browser_sign_in(new_page(), "ben@example.com")
    for buyer in (ana, ben):  # both have the event page open with one seat left
        buyer.goto(f"/events/{event_id}")
        expect(buyer.get_by_test_id("availability")).to_have_text("1 left")

    ana.get_by_role("button", name="Get tickets").click()
    expect(ana).to_have_url(re.compile(r"/checkout/[0-9a-f]{32}$"))  # htmx was told where to go

    # Ben clicks a moment later: told beside the form, without leaving the page.
    ben.get_by_role("button", name="Get tickets").click()
    refusal = ben.get_by_test_id("hold-refused")
    expect(refusal).to_contain_text("Sold out.")
    expect(ben).to_have_url(re.compile(rf"/events/{event_id}$"))
    screenshot(ben, "hold-refused")
    refusal.get_by_role("button", name="Join the waitlist for 1 ticket").click()
    expect(ben.get_by_test_id("waitlist-position")).to_contain_text("number 1")


# A camera and a QR reader for a browser that has neither (Linux chromium has no
# BarcodeDetector): a canvas stream stands in for the camera, and the "detector"
# sees whatever code the test puts in front of it.
FAKE_CAMERA = """
window.BarcodeDetector = class {
  static async getSupportedFormats() { return ["qr_code"]; }
  async detect() { return window.codeInView ? [{ rawValue: window.codeInView }] : []; }
};
navigator.mediaDevices.getUserMedia = async () => {
  const canvas = Object.assign(document.createElement("canvas"), { width: 64, height: 48 });
  const paint = canvas.getContext("2d");
  setInterval(() => { paint.fillStyle = `hsl(${Date.now() % 360} 50% 50%)`; paint.fillRect(0, 0, 64, 48); }, 50);
  return canvas.captureStream(20);
};
"""


@pytest.mark.browser
def test_a_code_scanned_with_the_camera_checks_in_once(
        new_page, browser_sign_in, make_user, make_org, make_event, make_ticket_type, ctx):
    from app.checkout.services import confirm_hold, hold_seats
    from app.models import User

    organiser_id = make_user("olive@example.com", name="Olive Organiser")
    event_id = make_event(account_id=make_org(organiser_id), name="Camera Night")
    ticket_type_id = make_ticket_type(event_id, name="Standing")
    buyer = db.session.get(User, make_user("sam@example.com", name="Sam Scanned"))
    order = confirm_hold(buyer, hold_seats(buyer, ticket_type_id, 1).id, "scan-test", "free")
    db.session.commit()
    code = order.tickets[0].code

    door = new_page()
    door.add_init_script(FAKE_CAMERA)
    browser_sign_in(door, "olive@example.com")
    door.goto(f"/manage/events/{event_id}/checkin")
    door.get_by_role("button", name="Scan with the camera").click()
    expect(door.locator("#scan-video")).to_be_visible()
    door.evaluate("code => { window.codeInView = code; }", code)
    result = door.get_by_test_id("checkin-result")
    expect(result).to_have_text("Checked in: Sam Scanned, Standing")
    expect(door.get_by_test_id("checkin-total")).to_contain_text("1 / 1")
    # Held in view, the code is not sent again (which would answer "already checked in").
    door.wait_for_timeout(3500)
    expect(result).to_have_text("Checked in: Sam Scanned, Standing")
    door.get_by_role("button", name="Stop the camera").click()
    expect(door.locator("#scan-video")).to_be_hidden()
