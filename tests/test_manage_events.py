"""Organisers: events, rooms and ticket types over HTTP, and who may touch them."""
import os
import time
from datetime import UTC, datetime, timedelta
from io import BytesIO

import pytest
from flask import url_for
from PIL import Image
from sqlalchemy import func, select, update

from app.access.services import grant_role
from app.extensions import db
from app.models import Event, EventStatus, Room, RoomKind, TicketType, User
from app.models.base import utcnow
from tests.conftest import csrf_token, post
from tests.test_concurrency import race

HTMX = {"HX-Request": "true"}


def reload():
    """Forget what this context read: the next query sees what the requests committed."""
    db.session.rollback()


def hx_post(client, path, data=None, token_from="/manage"):
    headers = {**HTMX, "X-CSRFToken": csrf_token(client, token_from)}
    return client.post(path, data=data or {}, headers=headers)


def local(value):
    """A datetime as a datetime-local input sends it."""
    return value.strftime("%Y-%m-%dT%H:%M")


def event_form(**overrides):
    return {"name": "Moon Festival", "slug": "", "timezone": "Europe/Paris", "description": "Under the moon",
            "starts_at": "2030-06-01T20:00", "ends_at": "2030-06-01T23:30", **overrides}


def count(model, *conditions):
    reload()
    return db.session.scalar(select(func.count()).select_from(model).where(*conditions))


def rooms_in_order(event_id):
    reload()
    return db.session.scalars(select(Room).where(Room.event_id == event_id).order_by(Room.position)).all()


def png(width=2000, height=1200):
    out = BytesIO()
    Image.new("RGB", (width, height), (91, 60, 196)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def organiser(owner_client, make_event):
    """The organisation owner's client and a draft event of theirs: (client, event id)."""
    client, _, org_id = owner_client
    return client, make_event(status=EventStatus.DRAFT, account_id=org_id)


def main_room_id(event_id):
    reload()
    return db.session.get(Event, event_id).main_room.id


# --- creating events ---------------------------------------------------------------------

def test_new_event_gets_a_main_stage_and_a_backstage(user_client, ctx):
    client, user_id = user_client
    response = post(client, "/manage/events/new", event_form(), token_from="/manage/events/new")
    assert response.status_code == 302
    event = db.session.scalar(select(Event))
    assert response.location.endswith(f"/manage/events/{event.id}")
    assert event.account_id == db.session.get(User, user_id).current_account_id
    assert (event.status, event.slug, event.timezone) == (EventStatus.DRAFT, "moon-festival", "Europe/Paris")
    # typed in Paris summer time (UTC+2), stored in UTC
    assert event.starts_at == datetime(2030, 6, 1, 18, 0, tzinfo=UTC)
    assert event.ends_at == datetime(2030, 6, 1, 21, 30, tzinfo=UTC)
    assert [(room.name, room.kind, room.is_main_room) for room in event.rooms] == [
        ("Main stage", RoomKind.MAIN, True), ("Backstage", RoomKind.BACKSTAGE, False)]
    assert "Moon Festival is created" in client.get(response.location).get_data(as_text=True)


@pytest.mark.parametrize("overrides, message", [
    ({"name": ""}, "Give the event a name."),
    ({"name": "x" * 201}, "Field cannot be longer than 200 characters."),
    ({"slug": "no spaces!"}, "Use lowercase letters, digits and single hyphens only."),
    ({"slug": "a" * 81}, "Field cannot be longer than 80 characters."),
    ({"ends_at": "2030-06-01T19:00"}, "The event must end after it starts."),
    ({"ends_at": "2030-06-01T20:00"}, "The event must end after it starts."),
    ({"starts_at": "tomorrow"}, "Not a valid datetime value."),
    ({"starts_at": ""}, "Enter when the event starts."),
    ({"starts_at": "9999-12-31T23:00"}, "Enter a date between the years 2000 and 2100."),
    ({"timezone": "Mars/Olympus_Mons"}, "Choose a time zone from the list."),
])
def test_bad_event_input_is_refused_in_the_form(user_client, ctx, overrides, message):
    client, _ = user_client
    response = post(client, "/manage/events/new", event_form(**overrides), token_from="/manage/events/new")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(Event) == 0 and count(Room) == 0


def test_slug_is_unique_per_account_with_a_clear_message(owner_client, ctx):
    client, _, org_id = owner_client
    assert post(client, "/manage/events/new", event_form(slug="launch"), token_from="/manage").status_code == 302
    response = post(client, "/manage/events/new", event_form(slug="launch"), token_from="/manage")
    assert response.status_code == 422
    assert "That address is taken" in response.get_data(as_text=True)
    # A blank slug is derived from the name, numbered when the account already uses it.
    assert post(client, "/manage/events/new", event_form(name="Launch!"), token_from="/manage").status_code == 302
    assert post(client, "/manage/events/new", event_form(name="Launch!"), token_from="/manage").status_code == 302
    reload()
    assert sorted(db.session.scalars(select(Event.slug))) == ["launch", "launch-2", "launch-3"]
    # another account of the same owner may use the same address
    assert post(client, f"/accounts/{org_id}/switch", token_from="/manage").status_code == 302
    assert post(client, "/manage/events/new", event_form(slug="launch"), token_from="/manage").status_code == 302
    assert count(Event, Event.account_id == org_id, Event.slug == "launch") == 1


def test_creating_needs_ownership_of_the_current_account(user_client, make_user, make_org, ctx):
    client, user_id = user_client
    stranger_org = make_org(make_user("bob@example.com"), name="Bob's Club")
    db.session.get(User, user_id).current_account_id = stranger_org
    db.session.commit()
    assert client.get("/manage/events/new").status_code == 403
    response = post(client, "/manage/events/new", event_form(), token_from="/dashboard")
    assert response.status_code == 403
    assert count(Event) == 0


def test_creating_needs_sign_in(client):
    response = client.get("/manage/events/new")
    assert response.status_code == 302 and "/auth/login" in response.location


# --- editing, publishing, archiving, deleting --------------------------------------------------

def test_edit_event(organiser, ctx):
    client, event_id = organiser
    page = client.get(f"/manage/events/{event_id}").get_data(as_text=True)
    assert 'id="event-form"' in page and "Launch Night" in page
    response = post(client, f"/manage/events/{event_id}",
                    event_form(name="Launch Night, live", slug="", timezone="America/New_York",
                               starts_at="2030-01-10T19:00", ends_at="2030-01-10T22:00"),
                    token_from=f"/manage/events/{event_id}")
    assert response.status_code == 302
    reload()
    event = db.session.get(Event, event_id)
    assert event.name == "Launch Night, live" and event.timezone == "America/New_York"
    assert event.starts_at == datetime(2030, 1, 11, 0, 0, tzinfo=UTC)  # New York winter time is UTC-5
    assert len(event.slug) == 8  # blank keeps the address it had
    # the form shows the times as they were typed, in the event's zone
    assert 'value="2030-01-10T19:00"' in client.get(f"/manage/events/{event_id}").get_data(as_text=True)


def test_edit_event_refuses_a_slug_another_event_uses(organiser, make_event, ctx):
    client, event_id = organiser
    reload()
    other = make_event(status=EventStatus.DRAFT, account_id=db.session.get(Event, event_id).account_id)
    reload()
    taken = db.session.get(Event, other).slug
    response = post(client, f"/manage/events/{event_id}", event_form(slug=taken),
                    token_from=f"/manage/events/{event_id}")
    assert response.status_code == 422 and "That address is taken" in response.get_data(as_text=True)
    reload()
    assert db.session.get(Event, event_id).name == "Launch Night"


def test_edit_event_validation_over_htmx_returns_the_form_fragment(organiser, ctx):
    client, event_id = organiser
    response = hx_post(client, f"/manage/events/{event_id}", event_form(ends_at="2030-06-01T10:00"))
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert body.lstrip().startswith('<section class="panel" id="event-form">') and "<html" not in body
    assert "The event must end after it starts." in body


def test_event_cannot_end_before_its_ticket_sales(organiser, make_ticket_type, ctx):
    client, event_id = organiser
    reload()
    event = db.session.get(Event, event_id)
    make_ticket_type(event_id, name="Early bird", sales_ends_at=event.ends_at - timedelta(minutes=30))
    earlier_end = event.ends_at - timedelta(hours=1)
    response = post(client, f"/manage/events/{event_id}",
                    event_form(timezone="UTC", starts_at=local(event.starts_at), ends_at=local(earlier_end)),
                    token_from=f"/manage/events/{event_id}")
    assert response.status_code == 422 and "Sales of “Early bird” end after that" in response.get_data(as_text=True)


def test_publish_a_ready_draft(organiser, ctx):
    client, event_id = organiser
    response = post(client, f"/manage/events/{event_id}/publish", token_from=f"/manage/events/{event_id}")
    assert response.status_code == 302
    reload()
    assert db.session.get(Event, event_id).status == EventStatus.ACTIVE
    # only a draft can be published
    response = post(client, f"/manage/events/{event_id}/publish", token_from=f"/manage/events/{event_id}")
    assert response.status_code == 409 and "Only a draft can be published." in response.get_data(as_text=True)


def test_publish_needs_a_main_room(organiser, ctx):
    client, event_id = organiser
    main = main_room_id(event_id)
    assert post(client, f"/manage/events/{event_id}/rooms/{main}/delete",
                token_from=f"/manage/events/{event_id}/rooms").status_code == 302
    response = hx_post(client, f"/manage/events/{event_id}/publish")
    body = response.get_data(as_text=True)
    assert response.status_code == 409 and "Add a main room before publishing" in body
    assert 'id="event-status"' in body and "<html" not in body
    reload()
    assert db.session.get(Event, event_id).status == EventStatus.DRAFT


def test_publish_refuses_an_event_that_is_over(owner_client, make_event, ctx):
    client, _, org_id = owner_client
    event_id = make_event(status=EventStatus.DRAFT, account_id=org_id, starts_in=-timedelta(days=2))
    response = post(client, f"/manage/events/{event_id}/publish", token_from="/manage")
    assert response.status_code == 409 and "already ended" in response.get_data(as_text=True)
    reload()
    assert db.session.get(Event, event_id).status == EventStatus.DRAFT


def test_archive(owner_client, make_event, ctx):
    client, _, org_id = owner_client
    event_id = make_event(account_id=org_id)
    response = hx_post(client, f"/manage/events/{event_id}/archive")
    assert response.status_code == 204 and response.headers["HX-Redirect"] == f"/manage/events/{event_id}"
    reload()
    assert db.session.get(Event, event_id).status == EventStatus.ARCHIVED
    response = post(client, f"/manage/events/{event_id}/archive", token_from="/manage")
    assert response.status_code == 409 and "already archived" in response.get_data(as_text=True)


def test_delete_a_draft_only(owner_client, make_event, make_ticket_type, ctx):
    client, _, org_id = owner_client
    active = make_event(account_id=org_id)
    response = post(client, f"/manage/events/{active}/delete", token_from="/manage")
    assert response.status_code == 409 and "Only a draft can be deleted" in response.get_data(as_text=True)
    assert count(Event, Event.id == active) == 1
    draft = make_event(status=EventStatus.DRAFT, account_id=org_id)
    make_ticket_type(draft)
    response = post(client, f"/manage/events/{draft}/delete", token_from="/manage")
    assert response.status_code == 302 and response.location.endswith("/manage")
    assert count(Event, Event.id == draft) == 0
    assert count(Room, Room.event_id == draft) == 0 and count(TicketType, TicketType.event_id == draft) == 0


def test_a_producer_manages_but_cannot_delete(owner_client, make_event, make_user, sign_in, app, ctx):
    _, _, org_id = owner_client
    event_id = make_event(status=EventStatus.DRAFT, account_id=org_id)
    producer = make_user("paula@example.com")
    grant_role(db.session.get(Event, event_id), "producer", user=db.session.get(User, producer))
    db.session.commit()
    client = sign_in("paula@example.com", app.test_client())
    page = client.get(f"/manage/events/{event_id}").get_data(as_text=True)
    assert "Publish" in page and "Delete draft" not in page
    assert post(client, f"/manage/events/{event_id}/delete", token_from="/dashboard").status_code == 403
    assert count(Event, Event.id == event_id) == 1


# --- cover image -------------------------------------------------------------------------------

def test_cover_upload_replaces_the_old_file(organiser, app, ctx):
    client, event_id = organiser
    path = f"/manage/events/{event_id}/cover"
    response = post(client, path, {"cover": (BytesIO(png()), "cover.png")}, token_from=path.rsplit("/", 1)[0],
                    content_type="multipart/form-data")
    assert response.status_code == 302
    reload()
    first = db.session.get(Event, event_id).cover_image_key
    assert first.startswith(f"covers/{event_id}-") and first.endswith(".webp")
    first_path = os.path.join(app.config["UPLOAD_DIR"], first)
    with Image.open(first_path) as image:
        assert (image.format, image.size) == ("WEBP", (1600, 900))
    assert f'src="/media/{first}"' in client.get(f"/manage/events/{event_id}").get_data(as_text=True)

    post(client, path, {"cover": (BytesIO(png(800, 600)), "other.png")}, token_from=f"/manage/events/{event_id}",
         content_type="multipart/form-data")
    reload()
    second = db.session.get(Event, event_id).cover_image_key
    assert second != first and os.path.exists(os.path.join(app.config["UPLOAD_DIR"], second))
    assert not os.path.exists(first_path)


@pytest.mark.parametrize("data, status, message", [
    (b"\x89PNG" + b"\0" * (5 * 1024 * 1024), 413, "That image is too large (5 MB at most)."),
    (b"just some text, not a picture", 415, "That file is not an image we can read."),
    (b"", 422, "Choose an image to upload."),
])
def test_bad_covers_are_refused(organiser, ctx, data, status, message):
    client, event_id = organiser
    response = client.post(f"/manage/events/{event_id}/cover", content_type="multipart/form-data",
                           data={"cover": (BytesIO(data), "cover.png")},
                           headers={**HTMX, "X-CSRFToken": csrf_token(client, "/manage")})
    body = response.get_data(as_text=True)
    assert response.status_code == status and message in body
    assert 'id="cover"' in body and "<html" not in body
    reload()
    assert db.session.get(Event, event_id).cover_image_key is None


# --- rooms ---------------------------------------------------------------------------------------

def test_add_rooms(organiser, ctx):
    client, event_id = organiser
    rooms_path = f"/manage/events/{event_id}/rooms"
    response = hx_post(client, rooms_path, {"name": "Breakout A", "kind": "breakout", "capacity": "40"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="rooms"' in body and "<html" not in body
    assert "Breakout A is added." in body
    assert post(client, rooms_path, {"name": "Green room", "kind": "backstage", "capacity": ""},
                token_from=rooms_path).status_code == 302
    assert hx_post(client, rooms_path, {"name": "Panel room", "kind": "breakout", "stage_slots": "6"}).status_code == 200
    rooms = rooms_in_order(event_id)
    assert [(room.name, room.capacity, room.position, room.stage_slots) for room in rooms] == [
        ("Main stage", None, 0, 4), ("Backstage", None, 1, 4), ("Breakout A", 40, 2, 4), ("Green room", None, 3, 4),
        ("Panel room", None, 4, 6)]


@pytest.mark.parametrize("data, message", [
    ({"name": "", "kind": "breakout"}, "Give the room a name."),
    ({"name": "x" * 81, "kind": "breakout"}, "Field cannot be longer than 80 characters."),
    ({"name": "Tiny", "kind": "breakout", "capacity": "0"}, "Capacity is a whole number of at least 1"),
    ({"name": "Tiny", "kind": "breakout", "capacity": "-5"}, "Capacity is a whole number of at least 1"),
    ({"name": "Tiny", "kind": "breakout", "capacity": "lots"}, "Not a valid integer value."),
    ({"name": "Tiny", "kind": "breakout", "capacity": "99999999999"}, "Capacity is a whole number of at least 1"),
    ({"name": "Tiny", "kind": "ballroom"}, "Not a valid choice."),
    ({"name": "Second stage", "kind": "main"}, "This event already has a main room."),
    ({"name": "Tiny", "kind": "breakout", "stage_slots": "0"}, "Stage places is a whole number from 1 to 50."),
    ({"name": "Tiny", "kind": "breakout", "stage_slots": "51"}, "Stage places is a whole number from 1 to 50."),
])
def test_bad_rooms_are_refused(organiser, ctx, data, message):
    client, event_id = organiser
    response = hx_post(client, f"/manage/events/{event_id}/rooms", data)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert count(Room, Room.event_id == event_id) == 2


def test_rename_a_room_inline(organiser, ctx):
    client, event_id = organiser
    backstage = rooms_in_order(event_id)[1].id
    edit = client.get(f"/manage/events/{event_id}/rooms/{backstage}/edit", headers=HTMX).get_data(as_text=True)
    assert edit.lstrip().startswith(f'<tr id="room-{backstage}" data-testid="room-edit-row">') and "<html" not in edit
    assert 'value="Backstage"' in edit
    # without htmx the whole page, with that row in edit mode
    page = client.get(f"/manage/events/{event_id}/rooms/{backstage}/edit").get_data(as_text=True)
    assert "<html" in page and 'data-testid="room-edit-row"' in page

    response = hx_post(client, f"/manage/events/{event_id}/rooms/{backstage}", {"name": "Green room", "capacity": "12"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<tr id="room-{backstage}" data-testid="room-row">') and "Green room" in body

    response = hx_post(client, f"/manage/events/{event_id}/rooms/{backstage}", {"name": " ", "capacity": "0"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and 'data-testid="room-edit-row"' in body
    assert "Give the room a name." in body and "Capacity is a whole number of at least 1" in body
    room = rooms_in_order(event_id)[1]
    assert (room.name, room.capacity, room.stage_slots) == ("Green room", 12, 4)
    main = rooms_in_order(event_id)[0].id
    response = hx_post(client, f"/manage/events/{event_id}/rooms/{main}",
                       {"name": "Main stage", "capacity": "", "stage_slots": "2"})
    assert response.status_code == 200 and "<td>2</td>" in response.get_data(as_text=True)
    assert rooms_in_order(event_id)[0].stage_slots == 2


def test_reorder_rooms(organiser, ctx):
    client, event_id = organiser
    rooms_path = f"/manage/events/{event_id}/rooms"
    hx_post(client, rooms_path, {"name": "Breakout", "kind": "breakout"})
    main, backstage, breakout = (room.id for room in rooms_in_order(event_id))
    response = hx_post(client, f"{rooms_path}/{breakout}/move", {"direction": "up"})
    assert response.status_code == 200 and 'id="rooms"' in response.get_data(as_text=True)
    assert [room.id for room in rooms_in_order(event_id)] == [main, breakout, backstage]
    post(client, f"{rooms_path}/{main}/move", {"direction": "down"}, token_from=rooms_path)
    assert [room.id for room in rooms_in_order(event_id)] == [breakout, main, backstage]
    # the ends do not move further, and the direction is checked
    post(client, f"{rooms_path}/{breakout}/move", {"direction": "up"}, token_from=rooms_path)
    assert [room.id for room in rooms_in_order(event_id)] == [breakout, main, backstage]
    assert post(client, f"{rooms_path}/{main}/move", {"direction": "sideways"},
                token_from=rooms_path).status_code == 422


def test_delete_rooms_but_not_the_main_room_of_a_published_event(owner_client, make_event, ctx):
    client, _, org_id = owner_client
    event_id = make_event(account_id=org_id)
    rooms_path = f"/manage/events/{event_id}/rooms"
    main, backstage = (room.id for room in rooms_in_order(event_id))
    response = hx_post(client, f"{rooms_path}/{backstage}/delete")
    assert response.status_code == 200 and response.get_data(as_text=True) == ""
    response = hx_post(client, f"{rooms_path}/{main}/delete")
    body = response.get_data(as_text=True)
    assert response.status_code == 409 and f'<tr id="room-{main}"' in body
    assert "The main room cannot be deleted while the event is published" in body
    assert [room.id for room in rooms_in_order(event_id)] == [main]


def test_a_room_of_another_event_is_not_found(organiser, make_event, ctx):
    client, event_id = organiser
    elsewhere = main_room_id(make_event())
    assert client.get(f"/manage/events/{event_id}/rooms/{elsewhere}/edit").status_code == 404
    assert post(client, f"/manage/events/{event_id}/rooms/{elsewhere}/delete",
                token_from="/manage").status_code == 404
    assert count(Room, Room.id == elsewhere) == 1


# --- ticket types ----------------------------------------------------------------------------------

def ticket_form(event, **overrides):
    return {"name": "General admission", "description": "", "price": "12.50", "currency": "eur",
            "capacity": "100", "max_per_order": "6", "sku": "", "sales_starts_at": "",
            "sales_ends_at": local(event.ends_at - timedelta(hours=1)),
            "rooms": [event.main_room.id], **overrides}


def event_of(event_id):
    reload()
    return db.session.get(Event, event_id)


def test_create_a_ticket_type(organiser, ctx):
    client, event_id = organiser
    new_path = f"/manage/events/{event_id}/tickets/new"
    form_page = client.get(new_path).get_data(as_text=True)
    main = main_room_id(event_id)
    assert f'value="{main}" checked' in form_page  # the main room is granted by default
    event = event_of(event_id)
    rooms = [room.id for room in event.rooms]
    response = post(client, new_path, ticket_form(event, price="12.5", currency=" usd ", is_upgrade="y",
                                                  sku="SHOP-GA-1", rooms=rooms), token_from=new_path)
    assert response.status_code == 302 and response.location.endswith(f"/manage/events/{event_id}/tickets")
    reload()
    ticket_type = db.session.scalar(select(TicketType))
    assert (ticket_type.price_cents, ticket_type.currency, ticket_type.capacity, ticket_type.max_per_order,
            ticket_type.is_upgrade, ticket_type.sku) == (1250, "USD", 100, 6, True, "SHOP-GA-1")
    assert ticket_type.sales_ends_at == (event.ends_at - timedelta(hours=1)).replace(second=0)
    assert [room.id for room in ticket_type.rooms] == rooms
    listing = client.get(f"/manage/events/{event_id}/tickets").get_data(as_text=True)
    assert "General admission" in listing and "12.50 USD" in listing


def test_sales_times_are_typed_in_the_event_time_zone(owner_client, make_event, ctx):
    client, _, org_id = owner_client
    event_id = make_event(status=EventStatus.DRAFT, account_id=org_id, timezone="Asia/Tokyo")
    event = event_of(event_id)
    sales_end_utc = (event.ends_at - timedelta(hours=2)).replace(second=0)
    tokyo_wall_clock = local(sales_end_utc + timedelta(hours=9))
    response = post(client, f"/manage/events/{event_id}/tickets/new",
                    ticket_form(event, sales_ends_at=tokyo_wall_clock), token_from="/manage")
    assert response.status_code == 302
    reload()
    assert db.session.scalar(select(TicketType.sales_ends_at)) == sales_end_utc


@pytest.mark.parametrize("overrides, message", [
    ({"name": ""}, "Give the ticket type a name."),
    ({"price": "-1"}, "The price is between 0 and 1,000,000."),
    ({"price": "twelve"}, "Not a valid decimal value."),
    ({"price": "NaN"}, "The price is between 0 and 1,000,000."),
    ({"price": "1.234"}, "Use at most two decimals."),
    ({"price": ""}, "Enter a price (0 for free)."),
    ({"currency": "EU"}, "Use a three-letter code such as EUR."),
    ({"currency": "E1R"}, "Use a three-letter code such as EUR."),
    ({"capacity": "-1"}, "Capacity is a whole number between 0 and 1,000,000."),
    ({"capacity": "ten"}, "Not a valid integer value."),
    ({"capacity": "1e3"}, "Not a valid integer value."),
    ({"max_per_order": "0"}, "Allow between 1 and 100 tickets per order."),
    ({"max_per_order": "101"}, "Allow between 1 and 100 tickets per order."),
    ({"sales_starts_at": "soon"}, "Not a valid datetime value."),
    ({"rooms": []}, "Choose at least one room."),
    ({"rooms": ["not-a-room"]}, "is not a valid choice"),
])
def test_bad_ticket_type_input_is_refused(organiser, ctx, overrides, message):
    client, event_id = organiser
    response = hx_post(client, f"/manage/events/{event_id}/tickets/new", ticket_form(event_of(event_id), **overrides))
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and message in body
    assert 'id="ticket-type-form"' in body and "<html" not in body
    assert count(TicketType) == 0


def test_sales_window_rules(organiser, ctx):
    client, event_id = organiser
    event = event_of(event_id)
    path = f"/manage/events/{event_id}/tickets/new"
    cases = [
        ({"sales_starts_at": local(event.starts_at), "sales_ends_at": local(event.starts_at - timedelta(hours=1))},
         "Sales must end after they start."),
        ({"sales_ends_at": local(event.ends_at + timedelta(minutes=1))}, "Sales cannot end after the event ends."),
        ({"sales_starts_at": local(utcnow() + timedelta(days=800)), "sales_ends_at": ""},
         "Sales cannot open more than two years from now."),
    ]
    for overrides, message in cases:
        response = post(client, path, ticket_form(event, **overrides), token_from=path)
        assert response.status_code == 422 and message in response.get_data(as_text=True), message
    assert count(TicketType) == 0


def test_sku_is_unique_per_event(organiser, make_event, make_ticket_type, ctx):
    client, event_id = organiser
    make_ticket_type(event_id, name="VIP", sku="SKU-1")
    make_ticket_type(make_event(), sku="SKU-2")  # another event's SKU does not matter
    path = f"/manage/events/{event_id}/tickets/new"
    response = post(client, path, ticket_form(event_of(event_id), sku="SKU-1"), token_from=path)
    assert response.status_code == 422
    assert "Another ticket type of this event already uses that SKU." in response.get_data(as_text=True)
    assert post(client, path, ticket_form(event_of(event_id), sku="SKU-2"), token_from=path).status_code == 302
    assert count(TicketType, TicketType.event_id == event_id) == 2


def test_edit_a_ticket_type(organiser, make_ticket_type, ctx):
    client, event_id = organiser
    ticket_type_id = make_ticket_type(event_id, capacity=50, price_cents=2000, sku="GA")
    path = f"/manage/events/{event_id}/tickets/{ticket_type_id}"
    page = client.get(path).get_data(as_text=True)
    assert 'value="20.00"' in page and 'value="GA"' in page
    event = event_of(event_id)
    backstage = event.rooms[1].id
    response = post(client, path, ticket_form(event, name="GA + backstage", price="0", sku="GA",
                                              rooms=[backstage]), token_from=path)
    assert response.status_code == 302
    reload()
    ticket_type = db.session.get(TicketType, ticket_type_id)
    assert (ticket_type.name, ticket_type.price_cents, ticket_type.sku) == ("GA + backstage", 0, "GA")
    assert [room.id for room in ticket_type.rooms] == [backstage]


def test_capacity_cannot_drop_under_what_is_sold(organiser, make_ticket_type, ctx):
    client, event_id = organiser
    ticket_type_id = make_ticket_type(event_id, capacity=50)
    ticket_type = db.session.get(TicketType, ticket_type_id)
    ticket_type.sold, ticket_type.held = 10, 2
    db.session.commit()
    path = f"/manage/events/{event_id}/tickets/{ticket_type_id}"
    response = hx_post(client, path, ticket_form(event_of(event_id), name="Renamed", capacity="11"))
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Capacity cannot go below the 12 tickets already sold or held." in body and "<html" not in body
    reload()
    ticket_type = db.session.get(TicketType, ticket_type_id)
    assert (ticket_type.capacity, ticket_type.name) == (50, "General admission")  # nothing half-written
    assert post(client, path, ticket_form(event_of(event_id), capacity="12"), token_from=path).status_code == 302
    reload()
    assert db.session.get(TicketType, ticket_type_id).capacity == 12


SALE_DELAYS = [index * 0.005 for index in range(8)]


@pytest.mark.concurrency
def test_lowering_capacity_while_tickets_sell_never_fails_or_oversells(organiser, make_ticket_type, data_app, ctx):
    """Sales land between the organiser's check and write: the capacity change is
    checked in the same statement, so it either fits or is refused with the message."""
    client, event_id = organiser
    path = f"/manage/events/{event_id}/tickets"
    token = csrf_token(client, path)

    def sell_one(ticket_type_id, delay):
        time.sleep(delay)  # spread the sales over the organiser's request, before and after its write
        with data_app.app_context():
            sold = db.session.execute(
                update(TicketType).where(TicketType.id == ticket_type_id,
                                         TicketType.sold + TicketType.held + 1 <= TicketType.capacity)
                .values(sold=TicketType.sold + 1)).rowcount
            db.session.commit()
            return sold

    for round_ in range(8):
        ticket_type_id = make_ticket_type(event_id, name=f"Round {round_}", capacity=20)
        db.session.get(TicketType, ticket_type_id).sold = 10
        db.session.commit()
        form = {**ticket_form(event_of(event_id), name=f"Round {round_}", capacity="14"), "csrf_token": token}
        results = race([lambda: client.post(f"{path}/{ticket_type_id}", data=form).status_code]
                       + [lambda delay=delay: sell_one(ticket_type_id, delay) for delay in SALE_DELAYS])
        reload()
        ticket_type = db.session.get(TicketType, ticket_type_id)
        assert results[0] in (302, 422), results
        assert ticket_type.sold == 10 + sum(results[1:]) <= ticket_type.capacity
        assert ticket_type.capacity == (14 if results[0] == 302 else 20)


def test_a_ticket_type_of_another_event_is_not_found(organiser, make_event, make_ticket_type):
    client, event_id = organiser
    elsewhere = make_ticket_type(make_event())
    assert client.get(f"/manage/events/{event_id}/tickets/{elsewhere}").status_code == 404


# --- pages and fragments -----------------------------------------------------------------------------

@pytest.mark.parametrize("path, fragment_start", [
    ("/manage/events/new", '<section class="panel" id="event-form">'),
    ("/manage/events/{event}", '<section class="panel" id="event-form">'),
    ("/manage/events/{event}/rooms", '<section id="rooms">'),
    ("/manage/events/{event}/rooms/{room}/edit", '<tr id="room-{room}" data-testid="room-edit-row">'),
    ("/manage/events/{event}/tickets", '<section id="ticket-types">'),
    ("/manage/events/{event}/tickets/new", '<section class="panel" id="ticket-type-form">'),
    ("/manage/events/{event}/tickets/{ticket_type}", '<section class="panel" id="ticket-type-form">'),
])
def test_htmx_gets_the_fragment_and_a_browser_the_page(organiser, make_ticket_type, ctx, path, fragment_start):
    client, event_id = organiser
    ids = {"event": event_id, "room": main_room_id(event_id), "ticket_type": make_ticket_type(event_id)}
    path, fragment_start = path.format(**ids), fragment_start.format(**ids)
    fragment = client.get(path, headers=HTMX)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and body.lstrip().startswith(fragment_start)
    page = client.get(path).get_data(as_text=True)
    assert "<html" in page and fragment_start in page


# --- who may do what -------------------------------------------------------------------------------------

EVENT_ROUTES = [
    ("GET", "manage.event"), ("POST", "manage.update_event"), ("POST", "manage.publish_event"),
    ("POST", "manage.archive_event"), ("POST", "manage.delete_event"), ("POST", "manage.upload_cover"),
    ("GET", "manage.rooms"), ("POST", "manage.add_room"), ("GET", "manage.edit_room"),
    ("POST", "manage.update_room"), ("POST", "manage.move_room"), ("POST", "manage.delete_room"),
    ("GET", "manage.ticket_types"), ("GET", "manage.new_ticket_type"), ("POST", "manage.new_ticket_type"),
    ("GET", "manage.edit_ticket_type"), ("POST", "manage.update_ticket_type"),
]


def test_every_event_route_is_in_the_authorization_table(app):
    ours = {(method, rule.endpoint) for rule in app.url_map.iter_rules()
            if app.view_functions[rule.endpoint].__module__ == "app.manage.routes"
            for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert ours - {("GET", "manage.dashboard"), ("GET", "manage.new_event"), ("POST", "manage.new_event")} \
        == set(EVENT_ROUTES)


@pytest.fixture
def guarded_event(owner_client, make_event, make_ticket_type, make_user, sign_in, app, ctx):
    """A draft event of Alice's with a breakout room and a ticket type, plus an attendee
    of it and a stranger (owner of another account), both signed in."""
    _, _, org_id = owner_client
    event_id = make_event(status=EventStatus.DRAFT, account_id=org_id)
    event = db.session.get(Event, event_id)
    room = Room(event_id=event_id, name="Breakout", position=2)
    db.session.add(room)
    attendee = make_user("fan@example.com")
    grant_role(event, "attendee", user=db.session.get(User, attendee))
    db.session.commit()
    ids = {"event_id": event_id, "room_id": room.id, "ticket_type_id": make_ticket_type(event_id)}
    make_user("stranger@example.com")
    return (ids, sign_in("fan@example.com", app.test_client()), sign_in("stranger@example.com", app.test_client()))


def call(app, client, method, endpoint, ids):
    with app.test_request_context():
        rule = next(rule for rule in app.url_map.iter_rules(endpoint))
        url = url_for(endpoint, **{key: ids[key] for key in rule.arguments})
    if method == "GET":
        return client.get(url)
    return client.post(url, data={"name": "Taken over", "direction": "up",
                                  "csrf_token": csrf_token(client, "/dashboard")})


@pytest.mark.parametrize("method, endpoint", EVENT_ROUTES)
def test_attendees_are_forbidden_and_strangers_find_nothing(app, guarded_event, method, endpoint):
    ids, attendee, stranger = guarded_event
    assert call(app, attendee, method, endpoint, ids).status_code == 403
    assert call(app, stranger, method, endpoint, ids).status_code == 404
    reload()
    event = db.session.get(Event, ids["event_id"])
    assert event is not None and (event.name, event.status) == ("Launch Night", EventStatus.DRAFT)
    assert [room.name for room in event.rooms] == ["Main stage", "Backstage", "Breakout"]
