"""Who may do what on an event (the permission engine), and the organiser's team and
participants pages: invitations, inline grants and revokes, search, CSV, the cache."""
import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import delete, event as sa_event, func, select

from app.access.services import add_role_inheritance, can
from app.errors import DomainError
from app.extensions import db, redis
from app.models import (AccessGrant, Event, EventStatus, Invitation, PendingProfile, RoleInheritance, Room,
                        RoomKind, User)
from app.models.base import new_id, utcnow
from tests.conftest import csrf_token, post

ROLES = ["viewer", "attendee", "talent", "moderator", "host", "producer", "owner"]

# The default roles as DESIGN.md and the seeding migration describe them, written out
# rather than derived: owner > producer > host > moderator > attendee > viewer, and
# talent = attendee + stage.appear + room.publish.
PERMISSION_MATRIX = """
                    viewer attendee talent moderator host producer owner
event.manage          .       .       .       .       .      X      X
event.delete          .       .       .       .       .      .      X
team.manage           .       .       .       .       .      X      X
orders.view           .       .       .       .       .      X      X
participants.view     .       .       .       X       X      X      X
analytics.view        .       .       .       .       .      X      X
room.join             X       X       X       X       X      X      X
room.publish          .       .       X       .       X      X      X
stage.manage          .       .       .       .       X      X      X
stage.appear          .       .       X       .       X      X      X
chat.send             .       X       X       X       X      X      X
chat.moderate         .       .       .       X       X      X      X
recording.control     .       .       .       .       .      X      X
"""


def expected_matrix():
    header, *lines = PERMISSION_MATRIX.strip().splitlines()
    roles = header.split()
    return {(role, cells[0]): mark == "X"
            for cells in map(str.split, lines) for role, mark in zip(roles, cells[1:])}


# --- factories (test_invitations.py imports them) ----------------------------------

@pytest.fixture
def make_event(app):
    """Factory: an event of the account with a main room and a backstage; returns its id."""
    def make(account_id, name="Night Live", status=EventStatus.ACTIVE):
        with app.app_context():
            starts = utcnow() + timedelta(days=7)
            event = Event(account_id=account_id, name=name, slug=f"night-live-{new_id()[:8]}", status=status,
                          starts_at=starts, ends_at=starts + timedelta(hours=3))
            db.session.add(event)
            db.session.flush()
            db.session.add_all([
                Room(event_id=event.id, name="Main stage", kind=RoomKind.MAIN, is_main_room=True, position=0),
                Room(event_id=event.id, name="Backstage", kind=RoomKind.BACKSTAGE, position=1)])
            db.session.commit()
            return event.id
    return make


@pytest.fixture
def make_grant(app):
    """Factory: a role on the event (or one room) for a user or a pending profile's e-mail."""
    def make(event_id, role_id, user_id=None, room_id=None, pending_email=None, source="manual"):
        with app.app_context():
            profile_id = None
            if pending_email:
                profile = PendingProfile(email=pending_email)
                db.session.add(profile)
                db.session.flush()
                profile_id = profile.id
            grant = AccessGrant(event_id=event_id, role_id=role_id, room_id=room_id, user_id=user_id,
                                pending_profile_id=profile_id, source=source)
            db.session.add(grant)
            db.session.commit()
            return grant.id
    return make


def room_id(event_id, name):
    return db.session.scalar(select(Room.id).where(Room.event_id == event_id, Room.name == name))


@pytest.fixture
def organiser(owner_client, make_event):
    """Alice owns the organisation and its event: (client, user id, event id)."""
    client, user_id, account_id = owner_client
    return client, user_id, make_event(account_id)


@pytest.fixture
def member(app, sign_in, make_user, make_grant, organiser):
    """Factory: a signed-in client for someone holding `role_id` on the organiser's event."""
    def make(role_id, email=None):
        email = email or f"{role_id}@example.com"
        make_grant(organiser[2], role_id, user_id=make_user(email))
        return sign_in(email, app.test_client())
    return make


@pytest.fixture
def restore_role_inheritances(app):
    """The roles tables outlive each test: put the seeded inheritances back."""
    with app.app_context():
        seeded = db.session.execute(select(RoleInheritance.role_id, RoleInheritance.inherits_id)).all()
    yield
    with app.app_context():
        db.session.execute(delete(RoleInheritance))
        db.session.add_all(RoleInheritance(role_id=r, inherits_id=i) for r, i in seeded)
        db.session.commit()


def htmx_post(client, path, data=None, token_from="/dashboard"):
    return client.post(path, data=data or {},
                       headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client, token_from)})


def grants_of(event_id):
    return db.session.execute(select(AccessGrant.role_id, AccessGrant.user_id, AccessGrant.pending_profile_id,
                                     AccessGrant.room_id).where(AccessGrant.event_id == event_id)).all()


def count(model):
    return db.session.scalar(select(func.count()).select_from(model))


# --- the permission engine --------------------------------------------------------

def test_each_default_role_holds_exactly_its_permissions(make_user, make_org, make_event, make_grant, ctx):
    event_id = make_event(make_org(make_user("boss@example.com")))
    users = {role: make_user(f"{role}@example.com") for role in ROLES}
    for role, user_id in users.items():
        make_grant(event_id, role, user_id=user_id)
    event = db.session.get(Event, event_id)
    actual = {(role, permission): can(db.session.get(User, users[role]), permission, event)
              for role, permission in expected_matrix()}
    assert actual == expected_matrix()
    assert len(actual) == 7 * 13


def test_account_owners_hold_every_permission_without_a_grant(make_user, make_org, make_event, ctx):
    boss = make_user("boss@example.com")
    event = db.session.get(Event, make_event(make_org(boss)))
    assert all(can(db.session.get(User, boss), permission, event) for _, permission in expected_matrix())


def test_a_room_grant_applies_only_in_that_room(make_user, make_org, make_event, make_grant, ctx):
    event_id = make_event(make_org(make_user("boss@example.com")))
    main, backstage = room_id(event_id, "Main stage"), room_id(event_id, "Backstage")
    host = make_user("host@example.com")
    make_grant(event_id, "host", user_id=host, room_id=backstage)
    user, event = db.session.get(User, host), db.session.get(Event, event_id)
    assert can(user, "stage.manage", event, room_id=backstage)
    assert not can(user, "stage.manage", event, room_id=main)
    assert not can(user, "stage.manage", event)  # not event-wide
    assert not can(user, "room.join", event, room_id=main)


def test_an_inheritance_change_is_live_and_a_cycle_is_refused(
        organiser, member, restore_role_inheritances, ctx):
    _, _, event_id = organiser
    talent = member("talent")
    path = f"/manage/events/{event_id}/participants"
    assert talent.get(path).status_code == 403
    user = db.session.scalar(select(User).where(User.email == "talent@example.com"))
    event = db.session.get(Event, event_id)
    assert not can(user, "participants.view", event)

    add_role_inheritance("talent", "moderator")  # moderator holds participants.view
    assert can(user, "participants.view", event)  # later in the same request too
    db.session.commit()
    assert talent.get(path).status_code == 200  # and in the next request

    before = count(RoleInheritance)
    for role_id, inherits_id in [("viewer", "owner"), ("moderator", "talent"), ("host", "host")]:
        with pytest.raises(DomainError) as refused:
            add_role_inheritance(role_id, inherits_id)
        assert refused.value.status == 422
        assert "cannot inherit from itself" in refused.value.message
    assert count(RoleInheritance) == before


def test_a_producer_cannot_hand_out_the_owner_role(organiser, member, ctx):
    _, _, event_id = organiser
    producer = member("producer")
    page = producer.get(f"/manage/events/{event_id}/team").get_data(as_text=True)
    assert '<option value="host">' in page and '<option value="owner">' not in page

    for path in (f"/manage/events/{event_id}/invitations", f"/manage/events/{event_id}/participants"):
        response = post(producer, path, {"contact": "new@example.com", "role": "owner"}, token_from="/dashboard")
        assert response.status_code == 403
        assert "more rights than your own" in response.get_data(as_text=True)
    assert count(Invitation) == 0 and count(PendingProfile) == 0
    assert [g.role_id for g in grants_of(event_id)] == ["producer"]

    response = post(producer, f"/manage/events/{event_id}/invitations", {"contact": "new@example.com",
                                                                       "role": "host"}, token_from="/dashboard")
    assert response.status_code == 302
    assert count(Invitation) == 1


def _guarded_requests(event_id, invitation_id, grant_id):
    base = f"/manage/events/{event_id}"
    return [("GET", f"{base}/team", "team.manage"),
            ("POST", f"{base}/invitations", "team.manage"),
            ("POST", f"{base}/invitations/{invitation_id}/revoke", "team.manage"),
            ("GET", f"{base}/participants", "participants.view"),
            ("GET", f"{base}/participants.csv", "participants.view"),
            ("POST", f"{base}/participants", "team.manage"),
            ("POST", f"{base}/participants/{grant_id}/revoke", "team.manage")]


def test_team_routes_are_for_the_right_roles_only(organiser, member, app, sign_in, make_grant, ctx):
    client, _, event_id = organiser
    post(client, f"/manage/events/{event_id}/invitations", {"contact": "x@example.com", "role": "viewer"},
         token_from="/dashboard")
    invitation_id = db.session.scalar(select(Invitation.id))
    grant_id = make_grant(event_id, "viewer", pending_email="y@example.com")
    clients = {"owner of the account": client, "attendee": member("attendee"), "moderator": member("moderator"),
               "stranger": sign_in("stranger@example.com", app.test_client()), "anonymous": app.test_client()}
    allowed = {"owner of the account": {"team.manage", "participants.view"}, "moderator": {"participants.view"},
               "attendee": set()}
    data = {"contact": "z@example.com", "role": "viewer"}
    for who, a_client in clients.items():
        for method, path, permission in _guarded_requests(event_id, invitation_id, grant_id):
            if method == "GET":
                status = a_client.get(path).status_code
            else:
                status = post(a_client, path, data, token_from="/").status_code
            if who == "anonymous":
                expected = {302}  # to sign-in
            elif who == "stranger":
                expected = {404}  # no hint the event exists
            elif permission in allowed[who]:
                expected = {200, 302}
            else:
                expected = {403}
            assert status in expected, (who, method, path, status)


def test_routes_of_another_organisations_event_answer_404(organiser, make_user, make_org, make_event, ctx):
    client, _, _ = organiser
    other = make_event(make_org(make_user("carol@example.com"), name="Carol Live"))
    assert client.get(f"/manage/events/{other}/team").status_code == 404
    assert client.get(f"/manage/events/{other}/participants").status_code == 404
    assert client.get("/manage/events/nope/participants").status_code == 404


# --- team page: invitations ---------------------------------------------------------

def test_team_page_and_its_fragment(organiser):
    client, _, event_id = organiser
    page = client.get(f"/manage/events/{event_id}/team")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in body
    assert 'id="invite-form"' in body and 'id="invitations"' in body
    assert 'name="room"' in body and "Main stage" in body
    assert "HX-Request" in page.headers["Vary"]
    fragment = client.get(f"/manage/events/{event_id}/team", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert 'id="invitations"' in text and "<html" not in text and 'id="invite-form"' not in text


def test_invite_by_htmx_answers_with_a_fresh_form_and_refreshes_the_list(organiser, run_jobs, outbox, ctx):
    client, _, event_id = organiser
    response = htmx_post(client, f"/manage/events/{event_id}/invitations",
                         {"contact": "  Host@Example.com ", "role": "host",
                          "room": room_id(event_id, "Backstage")})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert response.headers["HX-Trigger"] == "invitations-changed"
    assert "Invitation sent to host@example.com." in body and 'id="invite-form"' in body
    invitation = db.session.scalar(select(Invitation))
    assert (invitation.email, invitation.role_id, invitation.room.name) == ("host@example.com", "host", "Backstage")
    run_jobs()
    [mail] = outbox.to("host@example.com")
    assert "as Host in Backstage" in mail.get_body(("plain",)).get_content()


@pytest.mark.parametrize("data, message", [
    ({"contact": "", "role": "host"}, "Enter an e-mail address or a mobile number."),
    ({"contact": "not an address", "role": "host"}, "Enter an e-mail address, or a mobile number with its"),
    ({"contact": "someone@", "role": "host"}, "That does not look like an e-mail address."),
    ({"contact": "12345", "role": "host"}, "Enter the number with its country code"),
    ({"contact": "a" * 250 + "@example.com", "role": "host"}, "too long"),
    ({"contact": "new@example.com", "role": "emperor"}, "Choose a role."),
    ({"contact": "new@example.com"}, "Choose a role."),
    ({"contact": "new@example.com", "role": "host", "room": "no-such-room"}, "That room is not part of this event."),
])
def test_bad_invitations_and_grants_are_refused_with_the_reason(organiser, data, message, ctx):
    client, _, event_id = organiser
    for path in (f"/manage/events/{event_id}/invitations", f"/manage/events/{event_id}/participants"):
        response = htmx_post(client, path, data)
        body = response.get_data(as_text=True)
        assert response.status_code == 422, (path, body)
        assert message in body and "<html" not in body
        full = post(client, path, data, token_from="/dashboard")
        assert full.status_code == 422 and "<html" in full.get_data(as_text=True)
    assert count(Invitation) == 0 and count(PendingProfile) == 0 and count(AccessGrant) == 0


def test_a_room_of_another_event_is_refused(organiser, make_event, ctx):
    client, user_id, event_id = organiser
    other_room = room_id(make_event(db.session.get(Event, event_id).account_id, name="Other"), "Backstage")
    for path in (f"/manage/events/{event_id}/invitations", f"/manage/events/{event_id}/participants"):
        response = htmx_post(client, path, {"contact": "new@example.com", "role": "host", "room": other_room})
        assert response.status_code == 422
        assert "That room is not part of this event." in response.get_data(as_text=True)
    assert count(Invitation) == 0 and count(AccessGrant) == 0


def test_invitations_list_statuses_search_and_pages(organiser, make_user, ctx):
    client, _, event_id = organiser
    base = f"/manage/events/{event_id}"
    for i in range(22):
        post(client, f"{base}/invitations", {"contact": f"guest{i:02d}@example.com", "role": "attendee"},
             token_from="/dashboard")
    post(client, f"{base}/invitations", {"contact": "+44 7700 900123", "role": "talent"}, token_from="/dashboard")
    # One of each other status, set as it would happen.
    invitations = {i.email: i for i in db.session.scalars(select(Invitation))}
    invitations["guest00@example.com"].expires_at = utcnow() - timedelta(minutes=1)
    invitations["guest01@example.com"].accepted_at = utcnow()
    db.session.commit()
    htmx_post(client, f"{base}/invitations/{invitations['guest02@example.com'].id}/revoke")

    first = client.get(f"{base}/team").get_data(as_text=True)
    assert first.count('data-testid="invitation-row"') == 20 and "(23)" in first
    assert "+447700900123" in first  # newest first
    second = client.get(f"{base}/team?page=2").get_data(as_text=True)
    assert second.count('data-testid="invitation-row"') == 3 and "guest00@example.com" in second
    def row_ids(page):
        return re.findall(r'<tr id="invitation-(\w+)"', page)
    assert row_ids(client.get(f"{base}/team?page=99").get_data(as_text=True)) == row_ids(second)  # the last

    def statuses(query):
        page = client.get(f"{base}/team?{query}", headers={"HX-Request": "true"}).get_data(as_text=True)
        return re.findall(r'data-testid="invitation-status">(\w+)<', page)
    assert statuses("status=expired") == ["expired"]
    assert statuses("status=accepted") == ["accepted"]
    assert statuses("status=revoked") == ["revoked"]
    assert statuses("status=pending") == ["pending"] * 20
    assert statuses("q=GUEST1") == ["pending"] * 10
    assert statuses("q=7700") == ["pending"]
    assert statuses("q=100%25") == []  # LIKE wildcards are searched literally

    for query, message in [("q=" + "x" * 101, "Search for at most 100 characters."),
                           ("status=lost", "There is no such invitation status.")]:
        response = client.get(f"{base}/team?{query}")
        assert response.status_code == 422 and message in response.get_data(as_text=True)


def test_revoke_invitation_swaps_its_row(organiser, ctx):
    client, _, event_id = organiser
    post(client, f"/manage/events/{event_id}/invitations", {"contact": "new@example.com", "role": "host"},
         token_from="/dashboard")
    invitation = db.session.scalar(select(Invitation))
    path = f"/manage/events/{event_id}/invitations/{invitation.id}/revoke"
    response = htmx_post(client, path)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.lstrip().startswith(f'<tr id="invitation-{invitation.id}"')
    assert 'data-testid="invitation-status">revoked<' in body and "Revoke</button>" not in body
    db.session.expire_all()
    assert invitation.revoked_at is not None and invitation.grant_id is None
    assert count(AccessGrant) == 0  # the pending profile's grant went with it

    invitation.revoked_at, invitation.accepted_at = None, utcnow()
    db.session.commit()
    refused = htmx_post(client, path)
    assert refused.status_code == 409
    assert "This invitation was already accepted. Revoke the person" in refused.get_data(as_text=True)
    assert htmx_post(client, f"/manage/events/{event_id}/invitations/nope/revoke").status_code == 404


# --- participants ------------------------------------------------------------------

@pytest.fixture
def crowd(organiser, make_user, make_grant, ctx):
    """The organiser's event with a mix of people: users, pending profiles, a room grant."""
    _, _, event_id = organiser
    backstage = room_id(event_id, "Backstage")
    make_grant(event_id, "host", user_id=make_user("hannah@example.com", name="Hannah Host"))
    make_grant(event_id, "talent", user_id=make_user("tom@example.com", name="Tom Talent", phone="+15550100"),
               room_id=backstage)
    make_grant(event_id, "attendee", user_id=make_user("ada@example.com", name="Ada Lovelace"), source="ticket")
    make_grant(event_id, "attendee", pending_email="pending@example.com", source="order")
    return event_id


def rows_of(response):
    return re.findall(r'<tr id="grant-(\w+)" data-testid="participant-row">', response.get_data(as_text=True))


def test_participants_list_people_with_role_room_and_source(organiser, crowd):
    client, _, event_id = organiser
    response = client.get(f"/manage/events/{event_id}/participants")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in page and 'id="grant-form"' in page
    assert len(rows_of(response)) == 4 and "(4)" in page
    # Highest role first.
    assert page.index("Hannah Host") < page.index("Tom Talent") < page.index("Ada Lovelace")
    assert "pending@example.com" in page and "no account yet" in page
    assert "<td>Backstage</td>" in page and "<td>ticket</td>" in page and "<td>order</td>" in page

    fragment = client.get(f"/manage/events/{event_id}/participants", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert 'id="participants"' in text and "<html" not in text and 'id="grant-form"' not in text


def test_a_moderator_sees_participants_but_cannot_change_them(organiser, crowd, member):
    _, _, event_id = organiser
    moderator = member("moderator")
    page = moderator.get(f"/manage/events/{event_id}/participants").get_data(as_text=True)
    assert "Hannah Host" in page
    assert 'id="grant-form"' not in page and "Revoke</button>" not in page


def test_participants_search_and_filters(organiser, crowd, ctx):
    client, _, event_id = organiser
    base = f"/manage/events/{event_id}/participants"

    def names(query):
        response = client.get(f"{base}?{query}", headers={"HX-Request": "true"})
        assert response.status_code == 200
        return set(re.findall(r"(Hannah Host|Tom Talent|Ada Lovelace|pending@example\.com)",
                              response.get_data(as_text=True)))
    assert names("q=ada") == {"Ada Lovelace"}
    assert names("q=HANNAH%40EXAMPLE") == {"Hannah Host"}
    assert names("q=5550100") == {"Tom Talent"}
    assert names("q=pending") == {"pending@example.com"}
    assert names("role=attendee") == {"Ada Lovelace", "pending@example.com"}
    assert names(f"room={room_id(event_id, 'Backstage')}") == {"Tom Talent"}
    assert names(f"room={room_id(event_id, 'Main stage')}") == set()
    assert names("role=attendee&q=ada") == {"Ada Lovelace"}
    assert names("q=%25") == set()  # "%" is searched literally


def test_participants_bad_filters_are_refused_with_a_message(organiser, crowd, make_event, ctx):
    client, _, event_id = organiser
    other_room = room_id(make_event(db.session.get(Event, event_id).account_id, name="Other"), "Main stage")
    for query, message in [("q=" + "x" * 101, "Search for at most 100 characters."),
                           ("role=emperor", "There is no such role."),
                           ("room=nope", "That room is not part of this event."),
                           (f"room={other_room}", "That room is not part of this event.")]:
        for path in ("participants", "participants.csv"):
            response = client.get(f"/manage/events/{event_id}/{path}?{query}")
            assert response.status_code == 422, (path, query)
            assert message in response.get_data(as_text=True)
    nul = client.get(f"/manage/events/{event_id}/participants?q=a%00b")  # refused before any route
    assert nul.status_code == 400 and "cannot contain NUL" in nul.get_data(as_text=True)


def test_participants_are_paged_by_fifty(organiser, make_grant, ctx):
    client, _, event_id = organiser
    for i in range(61):
        make_grant(event_id, "attendee", pending_email=f"fan{i:02d}@example.com")
    base = f"/manage/events/{event_id}/participants"
    first, second = client.get(base), client.get(f"{base}?page=2")
    assert len(rows_of(first)) == 50 and len(rows_of(second)) == 11
    assert not set(rows_of(first)) & set(rows_of(second))
    assert "51–61 of 61" in second.get_data(as_text=True)
    assert rows_of(client.get(f"{base}?page=99999999999999999999")) == rows_of(second)
    assert rows_of(client.get(f"{base}?page=abc")) == rows_of(first)


def test_participants_csv_has_the_filtered_rows_and_defuses_formulas(organiser, make_user, make_grant, ctx):
    client, _, event_id = organiser
    make_grant(event_id, "attendee", user_id=make_user("mallory@example.com", name='=HYPERLINK("http://x")'))
    make_grant(event_id, "attendee", user_id=make_user("plus@example.com", name="+1+1", phone="+15550199"))
    make_grant(event_id, "attendee", user_id=make_user("at@example.com", name="@SUM(A1)"))
    make_grant(event_id, "host", user_id=make_user("dash@example.com", name="-2"))
    make_grant(event_id, "viewer", pending_email="quiet@example.com")

    response = client.get(f"/manage/events/{event_id}/participants.csv?role=attendee")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="night-live-\w+-participants.csv"',
                        response.headers["Content-Disposition"])
    header, *rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert header == ["Name", "E-mail", "Phone", "Role", "Room", "Source", "Granted at (UTC)", "Has an account"]
    assert sorted(row[0] for row in rows) == ["'+1+1", "'=HYPERLINK(\"http://x\")", "'@SUM(A1)"]
    plus = next(row for row in rows if row[1] == "plus@example.com")
    assert plus[2:6] == ["'+15550199", "Attendee", "Whole event", "manual"] and plus[7] == "yes"

    everyone = client.get(f"/manage/events/{event_id}/participants.csv").get_data(as_text=True)
    assert "'-2" in everyone and "quiet@example.com" in everyone and len(everyone.splitlines()) == 6


def test_grant_inline_is_visible_at_once(organiser, crowd, ctx):
    client, _, event_id = organiser
    base = f"/manage/events/{event_id}/participants"
    assert "newcomer@example.com" not in client.get(base).get_data(as_text=True)  # now cached

    response = htmx_post(client, base, {"contact": "Newcomer@example.com", "role": "talent",
                                        "room": room_id(event_id, "Main stage")})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "participants-changed"
    assert "newcomer@example.com is now Talent in Main stage." in body and 'id="grant-form"' in body
    profile = db.session.scalar(select(PendingProfile).where(PendingProfile.email == "newcomer@example.com"))
    assert profile is not None and count(Invitation) == 0  # granted directly, no link to accept

    page = client.get(base).get_data(as_text=True)
    assert "newcomer@example.com" in page and "(5)" in page


def test_a_second_identical_request_is_served_from_the_cache(app, organiser, crowd, ctx):
    client, _, event_id = organiser
    base = f"/manage/events/{event_id}/participants"
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)
    with app.app_context():
        engine = db.engine
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        def view_queries(path):
            statements.clear()
            assert client.get(path).status_code == 200
            return sum("event_participants" in s for s in statements)
        assert view_queries(base + "?q=a") == 2  # count and page
        assert view_queries(base + "?q=a") == 0
        assert view_queries(base + "?q=b") == 2  # another query is another entry
        keys = redis.keys(f"participants:{event_id}:v0:*")
        assert len(keys) == 2 and all(0 < redis.ttl(key) <= 30 for key in keys)

        # Any committed grant change moves the version, so the next read is fresh.
        granted = post(client, base, {"contact": "late@example.com", "role": "viewer"}, token_from="/dashboard")
        assert granted.status_code == 302
        assert redis.get(f"participants-version:{event_id}") == b"1"
        assert view_queries(base + "?q=a") == 2
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)


def test_revoke_grant_inline_removes_the_row(organiser, crowd, ctx):
    client, user_id, event_id = organiser
    base = f"/manage/events/{event_id}/participants"
    ada = db.session.scalar(select(AccessGrant.id).join(User, User.id == AccessGrant.user_id)
                            .where(User.email == "ada@example.com"))
    assert ada in rows_of(client.get(base))
    response = htmx_post(client, f"{base}/{ada}/revoke")
    assert response.status_code == 200 and response.get_data(as_text=True) == ""
    assert db.session.get(AccessGrant, ada) is None
    assert ada not in rows_of(client.get(base))

    gone = htmx_post(client, f"{base}/{ada}/revoke")
    assert gone.status_code == 404 and "That access is already gone." in gone.get_data(as_text=True)
    assert "<html" not in gone.get_data(as_text=True)


def test_a_producer_cannot_revoke_an_owner_or_themselves(organiser, member, make_user, make_grant, ctx):
    _, _, event_id = organiser
    producer = member("producer")
    owner_grant = make_grant(event_id, "owner", user_id=make_user("co-owner@example.com"))
    own_grant = db.session.scalar(select(AccessGrant.id).where(AccessGrant.role_id == "producer"))
    base = f"/manage/events/{event_id}/participants"
    page = producer.get(base).get_data(as_text=True)
    assert f"/participants/{owner_grant}/revoke" not in page

    refused = htmx_post(producer, f"{base}/{owner_grant}/revoke")
    assert refused.status_code == 403
    assert f'<tr id="grant-{owner_grant}"' in refused.get_data(as_text=True)
    own = htmx_post(producer, f"{base}/{own_grant}/revoke")
    assert own.status_code == 422 and "cannot revoke your own access" in own.get_data(as_text=True)
    assert db.session.get(AccessGrant, owner_grant) and db.session.get(AccessGrant, own_grant)
