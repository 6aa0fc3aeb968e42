"""An organiser sets an event up in a real browser: creates it, adds a breakout room
and a ticket type, publishes it and invites a host by e-mail; the host signs in
through the invitation link and finds the event, with the host role, on their dashboard."""
import re
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot

EVENT = "Harbour Lights Summit"
HOST = "host@example.com"
INVITATION_LINK = re.compile(r"https?://[^\s/]+(/invitations/[\w-]+)")


def tab(page, name):
    """One of the event's tabs (Overview, Rooms, Tickets, Team, Participants...)."""
    return page.locator("nav.tabs").get_by_role("link", name=name, exact=True)


def invitation_path(outbox):
    """The path of the link in the invitation e-mail to the host."""
    messages = outbox.to(HOST)
    assert len(messages) == 1, f"expected one e-mail to {HOST}, got {len(messages)}"
    assert messages[0]["Subject"] == f"You're invited to {EVENT}"
    match = INVITATION_LINK.search(messages[0].get_body(("plain",)).get_content())
    assert match, "no invitation link in the e-mail"
    return match.group(1)  # opened on the live server, whatever host the link names


@pytest.mark.browser
def test_organiser_sets_up_an_event_and_a_host_joins_through_the_invitation(
        new_page, browser_sign_in, make_user, outbox, run_jobs, live_server):
    make_user("orla@example.com", name="Orla Organiser")
    organiser = browser_sign_in(new_page(), "orla@example.com")

    # An organisation of her own to run events in.
    organiser.goto("/accounts")
    organiser.get_by_label("Organisation name").fill("Harbour Events")
    organiser.get_by_role("button", name="Create organisation").click()
    expect(organiser.get_by_test_id("current-account")).to_have_text("Harbour Events")

    # Manage events -> New event.
    organiser.get_by_role("link", name="Manage events").click()
    expect(organiser).to_have_url(re.compile(r"/manage$"))
    organiser.get_by_role("link", name="New event").click()
    expect(organiser.get_by_role("heading", name="New event")).to_be_visible()
    form = organiser.locator("#event-form")
    day = date.today() + timedelta(days=30)
    form.get_by_label("Name", exact=True).fill(EVENT)
    form.get_by_label("Time zone").select_option("Europe/Lisbon")
    form.get_by_label("Starts").fill(f"{day:%Y-%m-%d}T18:00")
    form.get_by_label("Ends").fill(f"{day:%Y-%m-%d}T17:00")  # a slip: before the start
    form.get_by_label("Description").fill("Talks and music by the water.")

    # The end before the start: refused next to the field, the typing kept, nothing created.
    form.get_by_role("button", name="Create event").click()
    expect(form.get_by_text("The event must end after it starts.")).to_be_visible()
    expect(organiser).to_have_url(re.compile(r"/manage/events/new$"))
    expect(form.get_by_label("Name", exact=True)).to_have_value(EVENT)
    expect(form.get_by_label("Time zone")).to_have_value("Europe/Lisbon")

    form.get_by_label("Ends").fill(f"{day:%Y-%m-%d}T22:30")
    form.get_by_role("button", name="Create event").click()
    expect(organiser).to_have_url(re.compile(r"/manage/events/[0-9a-f-]+$"))
    expect(organiser.get_by_role("heading", name=EVENT, level=1)).to_contain_text("draft")
    expect(organiser.locator("#flashes")).to_contain_text(
        f"{EVENT} is created as a draft, with a main stage and a backstage.")
    event_url = organiser.url

    # Rooms: the two the event starts with, then a breakout room added in place.
    tab(organiser, "Rooms").click()
    rooms = organiser.get_by_test_id("room-row")
    expect(rooms).to_have_count(2)
    expect(rooms.nth(0)).to_contain_text("Main stage")
    expect(rooms.nth(0)).to_contain_text("main")
    expect(rooms.nth(1)).to_contain_text("Backstage")
    add_room = organiser.locator("#add-room")
    add_room.get_by_label("Name", exact=True).fill("Q&A lounge")
    expect(add_room.get_by_label("Kind")).to_have_value("breakout")
    add_room.get_by_label("Capacity").fill("40")
    organiser.evaluate("window.notReloaded = true")
    add_room.get_by_role("button", name="Add room").click()
    expect(organiser.locator("#rooms").get_by_role("status")).to_have_text("Q&A lounge is added.")
    expect(rooms).to_have_count(3)
    expect(rooms.nth(2)).to_contain_text("Q&A lounge")
    expect(rooms.nth(2)).to_contain_text("breakout")
    expect(rooms.nth(2)).to_contain_text("40")
    assert organiser.evaluate("window.notReloaded === true")  # htmx swapped the list, no reload

    # Tickets: a free ticket type into the main stage (ticked by default).
    tab(organiser, "Tickets").click()
    expect(organiser.get_by_text("No ticket types yet.")).to_be_visible()
    organiser.get_by_role("link", name="New ticket type").click()
    ticket_form = organiser.locator("#ticket-type-form")
    ticket_form.get_by_label("Name", exact=True).fill("Community pass")
    ticket_form.get_by_label("Price").fill("0")
    ticket_form.get_by_label("Capacity").fill("120")
    granted = ticket_form.locator("#rooms-granted")
    expect(granted.get_by_label("Main stage")).to_be_checked()
    expect(granted.get_by_label("Q&A lounge")).not_to_be_checked()
    ticket_form.get_by_role("button", name="Add ticket type").click()
    expect(organiser.locator("#flashes")).to_contain_text("Community pass is added.")
    ticket_rows = organiser.get_by_test_id("ticket-type-row")
    expect(ticket_rows).to_have_count(1)
    for text in ("Community pass", "Free", "0 / 120", "Main stage"):
        expect(ticket_rows).to_contain_text(text)

    # Publish.
    tab(organiser, "Overview").click()
    status = organiser.locator("#event-status")
    expect(status).to_contain_text("3 rooms · 1 ticket type")
    status.get_by_role("button", name="Publish").click()
    expect(organiser.locator("#flashes")).to_contain_text("The event is published: its page is public.")
    expect(organiser.get_by_role("heading", name=EVENT, level=1).locator(".badge")).to_have_text("active")
    expect(status.get_by_role("heading")).to_have_text("Status: active")
    expect(organiser.get_by_role("link", name="Public page")).to_be_visible()

    # Team: invite the host by e-mail; the invitation shows as pending.
    tab(organiser, "Team").click()
    invite = organiser.locator("#invite-form")
    invite.get_by_label("E-mail or mobile number").fill(HOST)
    invite.get_by_label("Role").select_option(label="Host")
    invite.get_by_role("button", name="Send invitation").click()
    expect(invite.get_by_role("status")).to_have_text(f"Invitation sent to {HOST}.")
    expect(invite.get_by_label("E-mail or mobile number")).to_have_value("")
    invitations = organiser.get_by_test_id("invitation-row")
    expect(invitations).to_have_count(1)  # the list refreshed itself
    expect(invitations).to_contain_text(HOST)
    expect(invitations).to_contain_text("Host")
    expect(invitations).to_contain_text("Whole event")
    expect(invitations.get_by_test_id("invitation-status")).to_have_text("pending")
    screenshot(organiser, "team-invitation")

    # The host opens the link from the e-mail in a browser of their own.
    run_jobs()
    link = invitation_path(outbox)
    host = new_page()
    host.goto(link)
    invitation = host.locator("#invitation")
    expect(invitation.get_by_role("heading", name="You're invited")).to_be_visible()
    expect(invitation).to_contain_text(f"Orla Organiser invites you to {EVENT} as Host.")
    screenshot(host, "invitation")
    invitation.get_by_role("link", name="Sign in to accept").click()
    expect(host).to_have_url(re.compile(r"/auth/login\?next="))

    # Signing in (a new account) comes back to the invitation.
    host.get_by_label("E-mail").fill(HOST)
    host.get_by_role("button", name="E-mail me a code").click()
    expect(host).to_have_url(re.compile(r"/auth/verify$"))
    run_jobs()
    host.get_by_label("Code").fill(outbox.latest_code(HOST))
    host.get_by_role("button", name="Sign in").click()
    expect(host).to_have_url(f"{live_server.url}{link}")
    expect(host.locator("#flashes")).to_contain_text(f"Welcome, {HOST}.")
    host.get_by_role("button", name="Accept invitation").click()
    expect(host.locator("#flashes")).to_contain_text(f"Welcome to {EVENT}: you are a host.")
    expect(host.get_by_role("heading", name=EVENT)).to_be_visible()

    # Their dashboard lists the event with the host role.
    host.get_by_role("link", name="Dashboard").click()
    expect(host).to_have_url(re.compile(r"/dashboard$"))
    my_events = host.locator("#my-events")
    expect(my_events.get_by_role("heading", name="Events you're part of")).to_be_visible()
    mine = my_events.get_by_test_id("my-event")
    expect(mine).to_have_count(1)
    expect(mine.get_by_role("link", name=EVENT)).to_be_visible()
    expect(mine.get_by_test_id("my-role")).to_have_text(["Host"])
    screenshot(host, "host-dashboard")

    # The link works once: opened again, it says so.
    host.goto(link)
    expect(host.locator("#invitation").get_by_role("alert")).to_have_text("This invitation has already been used.")

    # Back with the organiser: the invitation is accepted, and the host is a participant.
    organiser.goto(event_url + "/team")
    expect(organiser.get_by_test_id("invitation-status")).to_have_text("accepted")
    tab(organiser, "Participants").click()
    people = organiser.get_by_test_id("participant-row").filter(has_text=HOST)
    expect(people).to_have_count(1)
    cells = people.get_by_role("cell")
    expect(cells.nth(1)).to_have_text("Host")
    expect(cells.nth(2)).to_have_text("Whole event")
    expect(cells.nth(3)).to_have_text("invitation")
    expect(people).not_to_contain_text("no account yet")
    screenshot(organiser, "participants")
