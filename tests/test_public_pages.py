"""The public event page and the user's own events on the dashboard."""
import re
from zoneinfo import ZoneInfo


from app.access.services import grant_role
from app.extensions import db
from app.models import Event, EventStatus, RoomKind, User
from tests.conftest import post


def test_active_event_is_public_with_both_time_zones(client, make_event):
    event_id = make_event(timezone="America/New_York")
    with client.application.app_context():
        starts = db.session.get(Event, event_id).starts_at.astimezone(ZoneInfo("America/New_York"))
    page = client.get(f"/events/{event_id}").get_data(as_text=True)
    assert "Launch Night" in page
    assert "(America/New_York)" in page and starts.strftime("%H:%M") in page and starts.hour != 18
    assert 'datetime="' in page and "localtime.js" in page  # the viewer's zone is added in the browser
    assert "Sign in</a> to see the rooms" in page


def test_draft_is_hidden_from_the_public_and_strangers(app, client, make_event, make_user, sign_in):
    event_id = make_event(status=EventStatus.DRAFT)
    assert client.get(f"/events/{event_id}").status_code == 404
    make_user("stranger@example.com")
    stranger = sign_in("stranger@example.com", app.test_client())
    assert stranger.get(f"/events/{event_id}").status_code == 404


def test_draft_is_visible_to_the_team(app, make_event, make_user, sign_in, ctx):
    event_id = make_event(status=EventStatus.DRAFT)
    host = db.session.get(User, make_user("host@example.com"))
    grant_role(db.session.get(Event, event_id), "host", user=host)
    db.session.commit()
    client = sign_in("host@example.com", app.test_client())
    response = client.get(f"/events/{event_id}")
    assert response.status_code == 200 and "draft" in response.get_data(as_text=True)


def test_rooms_listed_are_the_ones_the_viewer_may_enter(app, make_event, make_user, sign_in, ctx):
    event_id = make_event()
    event = db.session.get(Event, event_id)
    fan = db.session.get(User, make_user("fan@example.com"))
    backstage = next(r for r in event.rooms if r.kind == RoomKind.BACKSTAGE)
    grant_role(event, "attendee", user=fan, room_id=backstage.id)
    db.session.commit()
    client = sign_in("fan@example.com", app.test_client())
    page = client.get(f"/events/{event_id}").get_data(as_text=True)
    rooms = page.split('id="my-rooms"')[1].split("</ul>")[0]
    assert "Backstage" in rooms and "Main stage" not in rooms


def test_dashboard_lists_events_you_are_part_of_with_your_roles(app, make_event, make_user, sign_in, ctx):
    event_id = make_event(name="Garden Party")
    user = db.session.get(User, make_user("talent@example.com"))
    event = db.session.get(Event, event_id)
    grant_role(event, "talent", user=user)
    grant_role(event, "attendee", user=user, room_id=event.rooms[0].id)
    db.session.commit()
    page = sign_in("talent@example.com", app.test_client()).get("/dashboard").get_data(as_text=True)
    section = page.split('id="my-events"')[1]
    assert "Garden Party" in section
    assert 'data-testid="my-role">Talent<' in section and 'data-testid="my-role">Attendee<' in section


def test_unknown_event_is_404(client):
    assert client.get("/events/nope").status_code == 404


def test_organiser_dashboard_counts_searches_and_filters(owner_client, make_event, ctx):
    client, user_id, org_id = owner_client
    active = make_event(account_id=org_id, name="Summer Show")
    make_event(account_id=org_id, name="Winter Draft", status=EventStatus.DRAFT)
    grant_role(db.session.get(Event, active), "host", user=db.session.get(User, user_id))
    db.session.commit()
    post(client, f"/accounts/{org_id}/switch", token_from="/dashboard")
    page = client.get("/manage").get_data(as_text=True)
    assert page.count('data-testid="event-row"') == 2
    assert "Active (1)" in page and "Draft (1)" in page
    summer_row = page.split("Summer Show")[1].split("</tr>")[0]
    assert re.findall(r"<td>(\d+)</td>", summer_row) == ["2", "0", "1"]  # rooms, ticket types, participants
    assert 'data-testid="sold">0 / 0<' in summer_row
    assert client.get("/manage?q=winter").get_data(as_text=True).count('data-testid="event-row"') == 1
    assert client.get("/manage?status=active").get_data(as_text=True).count('data-testid="event-row"') == 1
    assert client.get("/manage?page=abc").status_code == 200


def test_organiser_dashboard_only_shows_the_current_account(owner_client, make_event, make_user, make_org):
    client, _, _ = owner_client
    make_event(account_id=make_org(make_user("other@example.com"), name="Other Org"), name="Not Yours")
    assert "Not Yours" not in client.get("/manage").get_data(as_text=True)
