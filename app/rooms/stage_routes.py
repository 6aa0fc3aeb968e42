"""The stage's routes: the backstage queue, vetting, approving, removing, timers.

Thin: check the permission (404 for strangers, 403 without it), call app/rooms/stage.py,
commit, then tell the sockets and LiveKit. With htmx each action answers the
backstage panel (or the vet form); without JS a redirect back to the room, or the
whole page with the reason and a 4xx.

The socket side is here too (fan_out_stage, fan_out_vet): the hub calls them to
render what each socket of a room may see, the private parts only for their owner
and the stage managers.
"""
from flask import current_app, flash, make_response, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.exc import IntegrityError

from app.access.services import can
from app.errors import DomainError
from app.extensions import db, limiter
from app.htmx import is_htmx_request, redirect_to
from app.models import Room, User
from app.rooms import bp, services, stage
from app.rooms.routes import room_context, chat_rate_limit, per_user_and_room


def _page_with(room, event, status, error):
    return make_response(render_template("rooms/room.html", **room_context(room, event, stage_error=error)),
                         status)


def _panel(room, event, status=200, error=None, notice=None):
    """The backstage panel (htmx) or, on an error without JS, the whole page."""
    if is_htmx_request():
        response = make_response(render_template(
            "rooms/_backstage.html", room=room, stage_error=error, stage_notice=notice,
            **stage.stage_context(current_user, room)), status)
    elif error:
        response = _page_with(room, event, status, error)
    else:
        if notice:
            flash(notice, "info")
        return redirect_to(url_for("rooms.show", room_id=room.id) + "#backstage")
    response.vary.add("HX-Request")
    return response


def _run(action):
    """Run a stage change and commit it; a rule's refusal rolls everything back."""
    try:
        result = action()
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        return None, exc
    return result, None


@bp.get("/rooms/<room_id>/camera-check")
@login_required
def camera_check(room_id):
    """The fan's camera and microphone check in the backstage room's video, while vetted:
    only the video, not the crew's backstage chat (the token route lets them join it)."""
    room, event = services.room_for(current_user, room_id)
    backstage = stage.camera_check_room(room, current_user)
    return render_template("rooms/camera_check.html", room=room, event=event, backstage=backstage,
                           livekit_configured=bool(current_app.config.get("LIVEKIT_URL")),
                           token_url=url_for("rooms.token", room_id=backstage.id))


@bp.get("/rooms/<room_id>/stage")
@login_required
def backstage(room_id):
    """The backstage panel alone (htmx refresh), else the room page."""
    room, event = services.room_for(current_user, room_id)
    return _panel(room, event)


@bp.post("/rooms/<room_id>/stage/queue")
@login_required
def join_queue(room_id):
    room, event = services.room_for(current_user, room_id, "stage.appear")
    try:
        _, error = _run(lambda: stage.join_queue(room, current_user))
    except IntegrityError:  # the same person's second click at the same moment: one place stands
        db.session.rollback()
        error = None
    if error:
        return _panel(room, event, error.status, error.message)
    stage.announce(room.id, current_user.id)
    return _panel(room, event)


@bp.post("/rooms/<room_id>/stage/queue/leave")
@login_required
def leave_queue(room_id):
    room, event = services.room_for(current_user, room_id, "stage.appear")
    appearance = stage.current_appearance(room.id, current_user.id)
    before = stage.active_entry(room.id, current_user.id)
    was_vetting = before is not None and before.status == "vetting"
    entry, error = _run(lambda: stage.leave_queue(room, current_user))
    if error:
        return _panel(room, event, error.status, error.message)
    if appearance is not None:
        stage.after_exit(room, appearance)
    elif was_vetting:
        stage.after_vetting_closed(room, entry)
    elif entry is not None:
        stage.announce(room.id, current_user.id)
    return _panel(room, event)


@bp.post("/rooms/<room_id>/stage/vet")
@login_required
def open_vetting(room_id):
    room, event = services.room_for(current_user, room_id, "stage.manage")
    entry, error = _run(lambda: stage.open_vetting(room, current_user, request.form.get("entry_id") or None))
    if error:
        return _panel(room, event, error.status, error.message)
    stage.after_vetting_opened(room, entry)
    return _panel(room, event)


@bp.get("/rooms/<room_id>/stage/entries/<entry_id>/vet")
@login_required
def vet_conversation(room_id, entry_id):
    room, event = services.room_for(current_user, room_id)
    entry = stage.entry_readable_by(current_user, room, entry_id)
    if not is_htmx_request():
        return redirect_to(url_for("rooms.show", room_id=room.id) + f"#vet-{entry.id}")
    response = make_response(render_template(
        "rooms/_vet.html", room=room, entry=entry, messages=stage.vet_messages(entry.id),
        manage=can(current_user, "stage.manage", event, room.id)))
    response.vary.add("HX-Request")
    return response


@bp.post("/rooms/<room_id>/stage/entries/<entry_id>/messages")
@login_required
@limiter.limit(chat_rate_limit, key_func=per_user_and_room)  # the room chat's limit, counted apart
def vet_message(room_id, entry_id):
    room, event = services.room_for(current_user, room_id)
    entry = stage.entry_readable_by(current_user, room, entry_id)
    body = request.form.get("body", "")
    message, error = _run(lambda: stage.post_vet_message(room, current_user, entry, body))
    if error is None:
        stage.announce_vet_message(room.id, entry, message)
    if is_htmx_request():
        response = make_response(render_template(
            "rooms/_vet_form.html", room=room, entry=entry, body=body if error else "",
            error=error.message if error else None), error.status if error else 200)
        response.vary.add("HX-Request")
        return response
    if error:
        return _page_with(room, event, error.status, error.message)
    return redirect_to(url_for("rooms.show", room_id=room.id) + f"#vet-{entry.id}")


@bp.post("/rooms/<room_id>/stage/entries/<entry_id>/approve")
@login_required
def approve(room_id, entry_id):
    room, event = services.room_for(current_user, room_id, "stage.manage")
    entry = stage.entry_in(room, entry_id)
    was_vetting = entry.status == "vetting"

    def act():
        minutes = stage.parse_minutes(request.form.get("minutes"))
        return stage.approve(room, current_user, entry, request.form.get("note"), minutes)

    appearance, error = _run(act)
    if error:
        return _panel(room, event, error.status, error.message)
    if was_vetting:
        stage.after_vetting_closed(room, entry)
    if appearance is not None:
        stage.after_enter(room, appearance)
        return _panel(room, event)
    stage.announce(room.id, entry.user_id)
    return _panel(room, event, notice=f"{entry.user_label} is approved, but the stage is full "
                                      f"({room.stage_slots} places): bring them on when a place frees up.")


@bp.post("/rooms/<room_id>/stage/entries/<entry_id>/reject")
@login_required
def reject(room_id, entry_id):
    room, event = services.room_for(current_user, room_id, "stage.manage")
    entry = stage.entry_in(room, entry_id)
    was_vetting = entry.status == "vetting"
    _entry, error = _run(lambda: stage.reject(room, current_user, entry, request.form.get("note")))
    if error:
        return _panel(room, event, error.status, error.message)
    if was_vetting:
        stage.after_vetting_closed(room, entry)
    else:
        stage.announce(room.id, entry.user_id)
    return _panel(room, event)


@bp.post("/rooms/<room_id>/stage/appearances/<appearance_id>/remove")
@login_required
def remove(room_id, appearance_id):
    room, event = services.room_for(current_user, room_id, "stage.manage")
    appearance = stage.appearance_in(room, appearance_id)
    _appearance, error = _run(lambda: stage.remove_from_stage(room, appearance))
    if error:
        return _panel(room, event, error.status, error.message)
    stage.after_exit(room, appearance)
    return _panel(room, event)


@bp.post("/rooms/<room_id>/stage/appearances/<appearance_id>/timer")
@login_required
def timer(room_id, appearance_id):
    room, event = services.room_for(current_user, room_id, "stage.manage")
    appearance = stage.appearance_in(room, appearance_id)

    def act():
        return stage.set_timer(room, appearance, stage.parse_minutes(request.form.get("minutes")))

    _appearance, error = _run(act)
    if error:
        return _panel(room, event, error.status, error.message)
    stage.schedule_timer(appearance)
    stage.announce(room.id, appearance.user_id)
    return _panel(room, event)


# --- the socket side ---------------------------------------------------------------

def _managers(room, user_ids):
    """Which of these users run the stage. Every role holding stage.manage also
    moderates chat, so the hub only asks about sockets that moderate."""
    managers = set()
    for user_id in user_ids:
        user = db.session.get(User, user_id)
        if user is not None and can(user, "stage.manage", room.event, room.id):
            managers.add(user_id)
    return managers


def fan_out_stage(hub, room_id, user_ids=(), only_user=None):
    """Re-render the stage list for everyone, the queue for the managers and the
    own panel of each person whose place changed (or who waits: positions move).
    only_user: that person's sockets alone, all of it (a socket catching up)."""
    connections = hub.local(room_id)
    if not connections:
        return
    with hub.app.app_context():
        room = db.session.get(Room, room_id)
        if room is None:
            return
        managers = _managers(room, {c.user_id for c in connections if c.can_moderate})
        on_stage = stage.on_stage(room_id)
        affected = set(user_ids) | {e.user_id for e in stage.queue(room_id)} | {only_user}
        rendered = {}

        def people(manage):
            key = ("people", manage)
            if key not in rendered:
                rendered[key] = hub.render("rooms/_stage_people.html", room=room, on_stage=on_stage,
                                           can_manage_stage=manage, oob=True, broadcast=True)
            return rendered[key]

        def panel(user_id, manage):
            key = ("panel", None if manage else user_id)
            if key not in rendered:
                user = db.session.get(User, user_id)
                if user is None:
                    rendered[key] = ""
                else:
                    context = stage.panel_context(room, user_id, manage)
                    rendered[key] = hub.render(
                        "rooms/_backstage_push.html", room=room, can_manage_stage=manage,
                        can_appear=can(user, "stage.appear", room.event, room.id),
                        me_on_stage=stage.current_appearance(room_id, user_id), broadcast=True,
                        livekit_configured=bool(hub.app.config.get("LIVEKIT_URL")), **context)
            return rendered[key]

        for connection in connections:
            user_id = connection.user_id
            if only_user and user_id != only_user:
                continue
            manage = user_id in managers
            html = people(manage)
            if manage or user_id in affected:
                html += panel(user_id, manage)
            hub.send(connection, html)


def fan_out_vet(hub, room_id, payload):
    """A new private message: to the fan's sockets and the stage managers' only."""
    connections = hub.local(room_id)
    if not connections:
        return
    from datetime import datetime

    with hub.app.app_context():
        room = db.session.get(Room, room_id)
        if room is None:
            return
        managers = _managers(room, {c.user_id for c in connections if c.can_moderate})
        message = dict(payload["message"], created_at=datetime.fromisoformat(payload["message"]["created_at"]))
        html = hub.render("rooms/_vet_append.html", entry_id=payload["entry_id"], message=message)
    for user_id in managers | {payload["user_id"]}:
        hub.send_to_user(room_id, user_id, html)
