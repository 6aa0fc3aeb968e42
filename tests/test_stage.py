"""The stage: backstage queue, private vetting, approval onto a limited stage, removal
and timers, stage events, LiveKit publish permission, and the socket's per-person push."""
import json
import time
from datetime import timedelta

import jwt
import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select, update

from app import create_app
from app.extensions import db, redis
from app.models import AccessGrant, Event, EventStatus, Room
from app.models.base import utcnow
from app.models.live import StageAppearance, StageEvent, StageQueueEntry, VetMessage
from app.rooms import stage
from app.rooms.live import Connection, Hub, hub_for
from tests.conftest import LIVEKIT_KEY, LIVEKIT_SECRET, RecordingSocket, app_config, csrf_token, post, wait_for
from tests.test_concurrency import race

HX = {"HX-Request": "true"}


@pytest.fixture
def member(app, data_app, make_user, sign_in, room):
    """Factory: a signed-in client holding `role` on the event: (client, user id)."""
    def make(role, email, on=None, event_id=None):
        user_id = make_user(email, name=email.split("@")[0].title())
        with data_app.app_context():
            db.session.add(AccessGrant(event_id=event_id or room["event_id"], user_id=user_id, role_id=role,
                                       source="manual"))
            db.session.commit()
        return sign_in(email, (on or app).test_client()), user_id
    return make


def url(room_id, suffix=""):
    return f"/rooms/{room_id}/stage{suffix}"


def act(client, room_id, suffix, data=None, htmx=True):
    return post(client, url(room_id, suffix), data or {}, token_from=f"/rooms/{room_id}",
                headers=HX if htmx else {})


def entry_of(user_id, room_id):
    db.session.expire_all()
    return db.session.scalar(select(StageQueueEntry).where(StageQueueEntry.user_id == user_id,
                                                           StageQueueEntry.room_id == room_id)
                             .order_by(StageQueueEntry.created_at.desc()).limit(1))


def current_on_stage(room_id):
    db.session.expire_all()
    return db.session.scalars(select(StageAppearance).where(StageAppearance.room_id == room_id,
                                                            StageAppearance.ended_at.is_(None))).all()


def set_slots(room_id, slots):
    db.session.execute(update(Room).where(Room.id == room_id).values(stage_slots=slots))
    db.session.commit()


# --- the queue ----------------------------------------------------------------------------

def test_fans_join_see_their_position_and_leave(member, room, ctx):
    ann, ann_id = member("vip", "ann@example.com")
    bob, _ = member("vip", "bob@example.com")
    page = ann.get(f"/rooms/{room['main']}").get_data(as_text=True)
    assert 'id="backstage"' in page and "Join the backstage queue" in page

    joined = act(ann, room["main"], "/queue")
    html = joined.get_data(as_text=True)
    assert joined.status_code == 200 and 'id="backstage"' in html and "<html" not in html
    assert "You are number <strong>1</strong>" in html
    assert "You are number <strong>2</strong>" in act(bob, room["main"], "/queue").get_data(as_text=True)
    # Joining twice keeps the one place.
    assert "number <strong>1</strong>" in act(ann, room["main"], "/queue").get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(StageQueueEntry)) == 2

    left = act(ann, room["main"], "/queue/leave")
    assert left.status_code == 200 and "Join the backstage queue" in left.get_data(as_text=True)
    assert "You are number <strong>1</strong>" in bob.get(f"/rooms/{room['main']}").get_data(as_text=True)
    assert entry_of(ann_id, room["main"]).status == "left"


def test_without_js_actions_redirect_back_to_the_room(member, room):
    ann, _ = member("vip", "ann@example.com")
    response = act(ann, room["main"], "/queue", htmx=False)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/rooms/{room['main']}#backstage")
    assert "You are number" in ann.get(f"/rooms/{room['main']}").get_data(as_text=True)


def test_without_stage_appear_joining_is_403(member, room, ctx):
    fan, _ = member("attendee", "att@example.com")
    page = fan.get(f"/rooms/{room['main']}").get_data(as_text=True)
    assert 'id="backstage"' not in page
    assert act(fan, room["main"], "/queue").status_code == 403
    assert db.session.scalar(select(func.count()).select_from(StageQueueEntry)) == 0


def test_backstage_room_has_no_queue_of_its_own(member, room):
    ann, _ = member("vip", "ann@example.com")
    response = act(ann, room["backstage"], "/queue")
    assert response.status_code == 409 and "main room" in response.get_data(as_text=True)


@pytest.fixture
def vetting(member, room):
    """A host, a VIP fan in the queue, the host vetting them: dict of clients and ids."""
    host, host_id = member("host", "hana@example.com")
    fan, fan_id = member("vip", "finn@example.com")
    act(fan, room["main"], "/queue")
    response = act(host, room["main"], "/vet")
    assert response.status_code == 200, response.get_data(as_text=True)
    with host.application.app_context():
        entry_id = db.session.scalar(select(StageQueueEntry.id).where(StageQueueEntry.user_id == fan_id))
    return {"host": host, "host_id": host_id, "fan": fan, "fan_id": fan_id, "entry_id": entry_id}


def test_strangers_get_404_on_every_stage_route(user_client, room, vetting, ctx):
    stranger, _ = user_client
    entry = vetting["entry_id"]
    assert stranger.get(url(room["main"])).status_code == 404
    assert stranger.get(f"/rooms/{room['main']}/camera-check").status_code == 404
    assert stranger.get(url(room["main"], f"/entries/{entry}/vet"), headers=HX).status_code == 404
    token = csrf_token(stranger, "/dashboard")
    for suffix in ("/queue", "/queue/leave", "/vet", f"/entries/{entry}/messages", f"/entries/{entry}/approve",
                   f"/entries/{entry}/reject", "/appearances/x/remove", "/appearances/x/timer"):
        response = stranger.post(url(room["main"], suffix), data={"csrf_token": token, "body": "hi"}, headers=HX)
        assert response.status_code == 404, suffix


def test_fans_cannot_run_the_stage(member, room, vetting, ctx):
    other, _ = member("vip", "olga@example.com")
    entry = vetting["entry_id"]
    for client in (vetting["fan"], other):
        for suffix in ("/vet", f"/entries/{entry}/approve", f"/entries/{entry}/reject",
                       "/appearances/x/remove", "/appearances/x/timer"):
            assert act(client, room["main"], suffix).status_code == 403, suffix
    assert entry_of(vetting["fan_id"], room["main"]).status == "vetting"


def test_posts_without_csrf_are_refused(vetting, room):
    response = vetting["fan"].post(url(room["main"], "/queue/leave"), headers=HX)
    assert response.status_code == 400


# --- vetting --------------------------------------------------------------------------------

def test_vet_conversation_is_private(member, room, vetting, ctx):
    host, fan, entry = vetting["host"], vetting["fan"], vetting["entry_id"]
    third, _ = member("vip", "theo@example.com")
    cohost, _ = member("host", "cora@example.com")
    assert act(host, room["main"], f"/entries/{entry}/messages", {"body": "Hi Finn, mic check?"}).status_code == 200
    assert act(fan, room["main"], f"/entries/{entry}/messages", {"body": "Loud and clear"}).status_code == 200
    assert [m.body for m in db.session.scalars(select(VetMessage).order_by(VetMessage.created_at))] == \
        ["Hi Finn, mic check?", "Loud and clear"]

    fan_page = fan.get(f"/rooms/{room['main']}").get_data(as_text=True)
    assert "Hi Finn, mic check?" in fan_page and "A host is checking you in" in fan_page
    assert f'href="/rooms/{room["main"]}/camera-check"' in fan_page
    for reader in (fan, host, cohost):
        html = reader.get(url(room["main"], f"/entries/{entry}/vet"), headers=HX).get_data(as_text=True)
        assert "Loud and clear" in html
    assert third.get(url(room["main"], f"/entries/{entry}/vet"), headers=HX).status_code == 404
    assert act(third, room["main"], f"/entries/{entry}/messages", {"body": "me too"}).status_code == 404
    assert "mic check" not in third.get(f"/rooms/{room['main']}").get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(VetMessage)) == 2


def test_a_flood_of_vet_messages_is_limited_apart_from_the_chat(room, vetting, ctx):
    fan, entry = vetting["fan"], vetting["entry_id"]
    token = csrf_token(fan, f"/rooms/{room['main']}")
    path = url(room["main"], f"/entries/{entry}/messages")
    codes = [fan.post(path, data={"body": f"m{i}", "csrf_token": token}, headers=HX).status_code for i in range(11)]
    assert codes == [200] * 10 + [429]
    refused = fan.post(path, data={"body": "again", "csrf_token": token}, headers=HX)
    assert refused.status_code == 429 and "too quickly" in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(VetMessage)) == 10
    chat = fan.post(f"/rooms/{room['main']}/messages", data={"body": "the chat is its own count",
                                                             "csrf_token": token}, headers=HX)
    assert chat.status_code == 200


def test_bad_input_is_a_clear_4xx_and_writes_nothing(room, vetting, ctx):
    host, fan, entry = vetting["host"], vetting["fan"], vetting["entry_id"]
    empty = act(fan, room["main"], f"/entries/{entry}/messages", {"body": "   "})
    assert empty.status_code == 422 and "Write something" in empty.get_data(as_text=True)
    bad_timer = act(host, room["main"], f"/entries/{entry}/approve", {"minutes": "soon"})
    assert bad_timer.status_code == 422 and "whole number of minutes" in bad_timer.get_data(as_text=True)
    long_note = act(host, room["main"], f"/entries/{entry}/reject", {"note": "x" * 501})
    assert long_note.status_code == 422 and "at most 500" in long_note.get_data(as_text=True)
    no_js = act(host, room["main"], f"/entries/{entry}/approve", {"minutes": "999"}, htmx=False)
    assert no_js.status_code == 422 and "<html" in no_js.get_data(as_text=True)
    assert entry_of(vetting["fan_id"], room["main"]).status == "vetting"
    assert db.session.scalar(select(func.count()).select_from(VetMessage)) == 0
    assert current_on_stage(room["main"]) == []
    assert act(host, room["main"], "/entries/nope/approve").status_code == 404


def test_reject_shows_the_note_to_the_fan(room, vetting, ctx):
    response = act(vetting["host"], room["main"], f"/entries/{vetting['entry_id']}/reject",
                   {"note": "Camera too dark, try again later"})
    assert response.status_code == 200
    page = vetting["fan"].get(f"/rooms/{room['main']}").get_data(as_text=True)
    assert "did not bring you on stage" in page and "Camera too dark, try again later" in page
    assert "Join the backstage queue" in page  # they may queue again
    again = act(vetting["host"], room["main"], f"/entries/{vetting['entry_id']}/approve")
    assert again.status_code == 409 and "no longer" in again.get_data(as_text=True)


def test_vet_next_with_nobody_waiting_is_409(member, room):
    host, _ = member("host", "hana@example.com")
    response = act(host, room["main"], "/vet")
    assert response.status_code == 409 and "Nobody is waiting" in response.get_data(as_text=True)


# --- the stage ----------------------------------------------------------------------------------

def test_approve_puts_on_stage_records_events_and_remove_ends_it(room, vetting, ctx):
    host, fan, entry = vetting["host"], vetting["fan"], vetting["entry_id"]
    redis.set(stage.recording_started_key(room["main"]), (utcnow() - timedelta(seconds=30)).isoformat())
    response = act(host, room["main"], f"/entries/{entry}/approve", {"note": "You're up!"})
    assert response.status_code == 200
    [appearance] = current_on_stage(room["main"])
    assert appearance.user_id == vetting["fan_id"] and appearance.slot_no == 0
    assert entry_of(vetting["fan_id"], room["main"]).status == "on_stage"
    page = fan.get(f"/rooms/{room['main']}").get_data(as_text=True)
    assert "You are on stage now" in page and 'data-on-stage="yes"' in page
    assert "Finn" in host.get(f"/rooms/{room['main']}").get_data(as_text=True)

    removed = act(host, room["main"], f"/appearances/{appearance.id}/remove")
    assert removed.status_code == 200
    assert current_on_stage(room["main"]) == []
    assert entry_of(vetting["fan_id"], room["main"]).status == "done"
    assert act(host, room["main"], f"/appearances/{appearance.id}/remove").status_code == 409
    events = db.session.scalars(select(StageEvent).order_by(StageEvent.at)).all()
    assert [(e.kind, e.reason, e.appearance_id, e.user_id) for e in events] == [
        ("enter", None, appearance.id, vetting["fan_id"]), ("exit", "removed", appearance.id, vetting["fan_id"])]
    assert 29_000 <= events[0].recording_offset_ms <= 60_000
    assert events[0].recording_started_at is not None
    assert "You are on stage now" not in fan.get(f"/rooms/{room['main']}").get_data(as_text=True)


def test_stage_events_without_a_recording_have_no_offset(room, vetting, ctx):
    act(vetting["host"], room["main"], f"/entries/{vetting['entry_id']}/approve")
    event = db.session.scalar(select(StageEvent))
    assert event.kind == "enter" and event.recording_offset_ms is None and event.recording_started_at is None


def test_full_stage_keeps_the_fan_approved_until_a_place_frees(member, room, vetting, ctx):
    set_slots(room["main"], 1)
    host = vetting["host"]
    act(host, room["main"], f"/entries/{vetting['entry_id']}/approve")
    second, second_id = member("vip", "sami@example.com")
    act(second, room["main"], "/queue")
    second_entry = entry_of(second_id, room["main"]).id
    full = act(host, room["main"], f"/entries/{second_entry}/approve")
    assert full.status_code == 200 and "stage is full" in full.get_data(as_text=True)
    assert entry_of(second_id, room["main"]).status == "approved"
    assert "You are approved!" in second.get(f"/rooms/{room['main']}").get_data(as_text=True)
    still_full = act(host, room["main"], f"/entries/{second_entry}/approve")
    assert "stage is full" in still_full.get_data(as_text=True)

    [first] = current_on_stage(room["main"])
    act(host, room["main"], f"/appearances/{first.id}/remove")
    assert act(host, room["main"], f"/entries/{second_entry}/approve").status_code == 200
    assert [a.user_id for a in current_on_stage(room["main"])] == [second_id]


def test_fan_leaves_the_stage_themselves(room, vetting, ctx):
    act(vetting["host"], room["main"], f"/entries/{vetting['entry_id']}/approve")
    assert act(vetting["fan"], room["main"], "/queue/leave").status_code == 200
    assert current_on_stage(room["main"]) == []
    assert db.session.scalar(select(StageEvent.reason).where(StageEvent.kind == "exit")) == "left"


def test_timer_job_ends_the_slot_once(room, vetting, ctx):
    host = vetting["host"]
    act(host, room["main"], f"/entries/{vetting['entry_id']}/approve", {"minutes": "5"})
    [appearance] = current_on_stage(room["main"])
    assert timedelta(minutes=4) < appearance.ends_at - utcnow() <= timedelta(minutes=5)
    assert "until" in vetting["fan"].get(f"/rooms/{room['main']}").get_data(as_text=True)
    scheduled = ScheduledJobRegistry(queue=redis.queue()).get_job_ids()
    assert f"stage-timer-{appearance.id}-{int(appearance.ends_at.timestamp())}" in scheduled

    assert stage.end_appearance_job(appearance.id) is False  # not due yet: nothing happens
    assert len(current_on_stage(room["main"])) == 1
    db.session.execute(update(StageAppearance).where(StageAppearance.id == appearance.id)
                       .values(ends_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert stage.end_appearance_job(appearance.id) is True
    assert stage.end_appearance_job(appearance.id) is False  # a second run does no harm
    assert current_on_stage(room["main"]) == []
    kinds = db.session.execute(select(StageEvent.kind, StageEvent.reason).order_by(StageEvent.at)).all()
    assert [tuple(k) for k in kinds] == [("enter", None), ("exit", "timer")]


def test_sweep_ends_a_timer_whose_job_was_lost(room, vetting, ctx):
    act(vetting["host"], room["main"], f"/entries/{vetting['entry_id']}/approve", {"minutes": "5"})
    redis.delete("rq:scheduled:default")  # the worker was down: the timer's job is gone
    assert stage.sweep_overdue_appearances() == 0  # not due yet
    db.session.execute(update(StageAppearance).values(ends_at=utcnow() - timedelta(seconds=5)))
    db.session.commit()
    assert stage.sweep_overdue_appearances() == 1
    assert stage.sweep_overdue_appearances() == 0
    assert current_on_stage(room["main"]) == []
    assert entry_of(vetting["fan_id"], room["main"]).status == "done"


def test_host_sets_a_timer_on_someone_on_stage(room, vetting, ctx):
    host = vetting["host"]
    act(host, room["main"], f"/entries/{vetting['entry_id']}/approve")
    [appearance] = current_on_stage(room["main"])
    assert appearance.ends_at is None
    assert act(host, room["main"], f"/appearances/{appearance.id}/timer", {"minutes": "0"}).status_code == 422
    assert act(host, room["main"], f"/appearances/{appearance.id}/timer", {"minutes": "2"}).status_code == 200
    [appearance] = current_on_stage(room["main"])
    assert timedelta(minutes=1) < appearance.ends_at - utcnow() <= timedelta(minutes=2)


# --- races ----------------------------------------------------------------------------------

@pytest.mark.concurrency
def test_hosts_approving_at_once_never_overfill_the_stage(app, member, room, ctx):
    slots, fans = 3, 8
    set_slots(room["main"], slots)
    fan_ids = []
    for i in range(fans):
        fan, fan_id = member("vip", f"fan{i}@example.com")
        act(fan, room["main"], "/queue")
        fan_ids.append(fan_id)
    entries = [entry_of(fan_id, room["main"]).id for fan_id in fan_ids]
    hosts = [member("host", f"host{i}@example.com")[0] for i in range(fans)]
    tokens = [csrf_token(h, f"/rooms/{room['main']}") for h in hosts]

    def approve(host, token, entry_id):
        return lambda: host.post(url(room["main"], f"/entries/{entry_id}/approve"),
                                 data={"csrf_token": token}, headers=HX).status_code

    statuses = race([approve(h, t, e) for h, t, e in zip(hosts, tokens, entries)])

    assert statuses == [200] * fans, statuses
    seated = current_on_stage(room["main"])
    assert len(seated) == slots
    assert sorted(a.slot_no for a in seated) == list(range(slots))
    by_status = dict(db.session.execute(select(StageQueueEntry.status, func.count())
                                        .group_by(StageQueueEntry.status)).all())
    assert by_status == {"on_stage": slots, "approved": fans - slots}
    assert db.session.scalar(select(func.count()).select_from(StageEvent)) == slots


@pytest.mark.concurrency
def test_two_hosts_approving_the_same_fan_seat_them_once(member, room, vetting, ctx):
    cohost, _ = member("host", "cora@example.com")
    clients = [vetting["host"], cohost]
    tokens = [csrf_token(c, f"/rooms/{room['main']}") for c in clients]
    path = url(room["main"], f"/entries/{vetting['entry_id']}/approve")
    statuses = race([lambda c=c, t=t: c.post(path, data={"csrf_token": t}, headers=HX).status_code
                     for c, t in zip(clients, tokens)])
    assert sorted(statuses) == [200, 409]
    assert len(current_on_stage(room["main"])) == 1
    assert db.session.scalar(select(func.count()).select_from(StageEvent)) == 1


# --- the token endpoint and LiveKit ------------------------------------------------------------


def can_publish(client, room_id):
    response = client.get(f"/rooms/{room_id}/token", headers={"Accept": "application/json"})
    assert response.status_code == 200, response.get_json()
    claims = jwt.decode(response.get_json()["token"], LIVEKIT_SECRET, algorithms=["HS256"], issuer=LIVEKIT_KEY)
    return claims["video"]["canPublish"]


def publish_calls(fake, room_name):
    return [(c.message.identity, c.message.permission.can_publish)
            for c in fake.calls_to("UpdateParticipant") if c.message.room == room_name]


def test_publish_flips_only_through_the_stage_flow(member, lk_app, fake_livekit, room, ctx):
    fake_livekit.reset()
    host, _ = member("host", "hana@example.com", on=lk_app)
    fan, fan_id = member("vip", "finn@example.com", on=lk_app)
    fake_livekit.add_participant(room["main_name"], fan_id, name="Finn")
    fake_livekit.add_participant(room["backstage_name"], fan_id, name="Finn")
    assert not can_publish(fan, room["main"]) and not can_publish(fan, room["backstage"])

    act(fan, room["main"], "/queue")
    assert not can_publish(fan, room["main"]) and not can_publish(fan, room["backstage"])
    act(host, room["main"], "/vet")
    assert can_publish(fan, room["backstage"]) and not can_publish(fan, room["main"])  # the camera check
    assert publish_calls(fake_livekit, room["backstage_name"]) == [(fan_id, True)]

    entry = entry_of(fan_id, room["main"]).id
    assert act(host, room["main"], f"/entries/{entry}/approve").status_code == 200
    assert can_publish(fan, room["main"]) and not can_publish(fan, room["backstage"])
    assert publish_calls(fake_livekit, room["main_name"]) == [(fan_id, True)]
    assert publish_calls(fake_livekit, room["backstage_name"]) == [(fan_id, True), (fan_id, False)]

    [appearance] = current_on_stage(room["main"])
    act(host, room["main"], f"/appearances/{appearance.id}/remove")
    assert not can_publish(fan, room["main"])
    assert publish_calls(fake_livekit, room["main_name"]) == [(fan_id, True), (fan_id, False)]


def test_livekit_down_never_stops_the_stage(member, lk_app, fake_livekit, room, ctx):
    fake_livekit.reset()
    host, _ = member("host", "hana@example.com", on=lk_app)
    fan, fan_id = member("vip", "finn@example.com", on=lk_app)
    act(fan, room["main"], "/queue")
    fake_livekit.down = True
    try:
        act(host, room["main"], "/vet")
        response = act(host, room["main"], f"/entries/{entry_of(fan_id, room['main']).id}/approve")
    finally:
        fake_livekit.down = False
    assert response.status_code == 200
    assert [a.user_id for a in current_on_stage(room["main"])] == [fan_id]
    assert can_publish(fan, room["main"])  # the next token carries it


def test_a_fan_whose_ticket_reaches_the_main_room_only_joins_backstage_while_vetted(
        member, lk_app, make_user, sign_in, data_app, room):
    host, _ = member("host", "hana@example.com", on=lk_app)
    fan_id = make_user("mia@example.com", name="Mia")
    with data_app.app_context():
        db.session.add(AccessGrant(event_id=room["event_id"], user_id=fan_id, role_id="vip", room_id=room["main"],
                                   source="manual"))
        db.session.commit()
    fan = sign_in("mia@example.com", lk_app.test_client())
    token_url = f"/rooms/{room['backstage']}/token"
    assert fan.get(token_url, headers={"Accept": "application/json"}).status_code == 403
    act(fan, room["main"], "/queue")
    act(host, room["main"], "/vet")
    assert can_publish(fan, room["backstage"])
    # The camera check page joins that video, and shows nothing else of the backstage room.
    check = fan.get(f"/rooms/{room['main']}/camera-check")
    html = check.get_data(as_text=True)
    assert check.status_code == 200 and f'data-token-url="{token_url}"' in html
    assert 'id="video-tiles"' in html and "chat-messages" not in html and "ws-connect" not in html
    assert "Open the camera check" in fan.get(f"/rooms/{room['main']}").get_data(as_text=True)
    assert fan.get(f"/rooms/{room['backstage']}").status_code == 403  # the crew's room itself stays closed
    act(fan, room["main"], "/queue/leave")
    assert fan.get(token_url, headers={"Accept": "application/json"}).status_code == 403
    refused = fan.get(f"/rooms/{room['main']}/camera-check")
    assert refused.status_code == 409 and "while a host is checking you in" in refused.get_data(as_text=True)


def test_hosts_publish_whatever_the_stage_says(member, lk_app, fake_livekit, room):
    host, _ = member("host", "hana@example.com", on=lk_app)
    assert can_publish(host, room["main"])


@pytest.mark.parametrize("status", [EventStatus.DRAFT, EventStatus.ARCHIVED])
def test_no_token_for_an_event_that_is_not_active_except_for_its_team(member, lk_app, data_app, make_event,
                                                                      status):
    event_id = make_event(status=status)
    with data_app.app_context():
        room_id = db.session.get(Event, event_id).main_room.id
    fan, _ = member("vip", "finn@example.com", on=lk_app, event_id=event_id)
    host, _ = member("host", "hana@example.com", on=lk_app, event_id=event_id)
    refused = fan.get(f"/rooms/{room_id}/token", headers={"Accept": "application/json"})
    assert refused.status_code == 403 and "not open" in refused.get_json()["error"]
    assert host.get(f"/rooms/{room_id}/token", headers={"Accept": "application/json"}).status_code == 200


# --- the socket -----------------------------------------------------------------------------------

@pytest.fixture
def second_process(base_dir, smtp_server):
    other = create_app("testing", **app_config(base_dir, smtp_server.port))
    yield other
    hub_for(other).stop()


def test_socket_pushes_the_stage_view_to_the_fan_only(member, room, vetting, second_process, ctx):
    other_fan, other_fan_id = member("vip", "olga@example.com")
    act(other_fan, room["main"], "/queue")
    _watcher, watcher_id = member("attendee", "walt@example.com")
    hub = Hub(second_process, window=0.05)
    sockets = {name: RecordingSocket() for name in ("fan", "other", "watcher", "host")}
    hub.add(Connection(sockets["fan"], room["main"], vetting["fan_id"], "Finn"))
    hub.add(Connection(sockets["other"], room["main"], other_fan_id, "Olga"))
    hub.add(Connection(sockets["watcher"], room["main"], watcher_id, "Walt"))
    hub.add(Connection(sockets["host"], room["main"], vetting["host_id"], "Hana", can_moderate=True))
    try:
        host, entry = vetting["host"], vetting["entry_id"]
        act(host, room["main"], f"/entries/{entry}/messages", {"body": "Ready, Finn?"})
        assert wait_for(lambda: "Ready, Finn?" in sockets["fan"].text() and "Ready, Finn?" in sockets["host"].text())
        act(host, room["main"], f"/entries/{entry}/approve")
        assert wait_for(lambda: "You are on stage now" in sockets["fan"].text())
        assert wait_for(lambda: all('id="stage-people"' in s.text() for s in sockets.values()))
        fan_push = next(f for f in sockets["fan"].sent if "You are on stage now" in f)
        assert 'id="stage-self"' in fan_push and 'hx-swap-oob="true"' in fan_push
        assert 'name="csrf_token"' not in fan_push  # htmx sends the page's token
        assert wait_for(lambda: "number <strong>1</strong>" in sockets["other"].text())  # moved up
        assert wait_for(lambda: 'data-testid="stage-queue"' in sockets["host"].text())
        time.sleep(0.2)
        for name in ("other", "watcher", "host"):
            text = sockets[name].text()
            assert "You are on stage now" not in text and "Ready, Finn?" not in text or name == "host", name
        for name in ("other", "watcher"):
            assert 'data-testid="stage-queue"' not in sockets[name].text()
        assert 'id="backstage"' not in sockets["watcher"].text()
        assert "Finn" in next(f for f in sockets["watcher"].sent if 'id="stage-people"' in f)
    finally:
        hub.stop()


def test_hub_sends_to_one_persons_sockets(second_process):
    hub = Hub(second_process, window=0.05)
    mine, my_other_tab, theirs = RecordingSocket(), RecordingSocket(), RecordingSocket()
    hub.add(Connection(mine, "room-u", "u1", "Ann"))
    hub.add(Connection(my_other_tab, "room-u", "u1", "Ann"))
    hub.add(Connection(theirs, "room-u", "u2", "Bob"))
    try:
        hub.send_to_user("room-u", "u1", "<p id='x'></p>")
        assert wait_for(lambda: mine.sent == my_other_tab.sent == ["<p id='x'></p>"])
        assert theirs.sent == []
        hub.dispatch(b"room:room-u", json.dumps({"type": "stage", "user_ids": ["u1"]}))  # no such room: ignored
        hub.dispatch(b"room:room-u", json.dumps({"type": "vet"}))  # malformed: logged, not raised
        assert theirs.sent == []
    finally:
        hub.stop()
