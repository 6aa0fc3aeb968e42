"""The room page, its socket, chat and chat moderation."""
import json
import logging
import time
from urllib.parse import urlsplit

from flask import abort, current_app, g, make_response, render_template, request, url_for
from flask_limiter import RateLimitExceeded
from flask_login import current_user, login_required
from simple_websocket import ConnectionClosed

from app.errors import DomainError, render_error
from app.extensions import db, limiter, sock
from app.htmx import is_htmx_request, redirect_to
from app.rooms import bp, services, stage
from app.models import Room
from app.rooms.live import Connection, hub_for

log = logging.getLogger(__name__)


def chat_rate_limit():
    return current_app.config["CHAT_RATE_LIMIT"]


def per_user_and_room():
    return f"{request.endpoint}:{current_user.get_id()}:{request.view_args.get('room_id')}"


def room_context(room, event, **extra):
    user = current_user._get_current_object()
    messages, has_older = services.chat_history(room.id, request.args.get("before") or None)
    return {"room": room, "event": event, "messages": messages, "has_older": has_older,
            **services.presence_context(room.id),
            "can_send": services.may(user, "chat.send", room),
            "can_moderate": services.may(user, "chat.moderate", room),
            "slow_mode": services.slow_mode_seconds(room.id),
            "livekit_configured": bool(current_app.config.get("LIVEKIT_URL")),
            # The LiveKit glue's token endpoint, when that part of the room is installed.
            "token_url": (url_for("rooms.token", room_id=room.id)
                          if "rooms.token" in current_app.view_functions else ""),
            # A path: htmx opens ws:// or wss:// on the page's own host, whatever the proxy.
            "socket_path": urlsplit(url_for("rooms.room_socket", room_id=room.id)).path,
            "body": "", "error": None, "stage_error": None, "stage_notice": None,
            **stage.stage_context(user, room), **extra}


@bp.get("/rooms/<room_id>")
@login_required
def show(room_id):
    room, event = services.room_for(current_user, room_id)
    return render_template("rooms/room.html", **room_context(room, event))


@bp.get("/rooms/<room_id>/messages")
@login_required
def history(room_id):
    """Older messages for the "older" link (htmx swaps them in above the rest)."""
    room, event = services.room_for(current_user, room_id)
    messages, has_older = services.chat_history(room.id, request.args.get("before") or None)
    response = make_response(render_template(
        "rooms/_chat_page.html", room=room, messages=messages, has_older=has_older,
        can_moderate=services.may(current_user, "chat.moderate", room)))
    response.vary.add("HX-Request")
    return response


def _form_response(room, event, status=200, body="", error=None):
    """The chat form again (htmx), or the whole page (a browser without JS)."""
    if is_htmx_request():
        response = make_response(render_template(
            "rooms/_chat_form.html", room=room, body=body, error=error,
            slow_mode=services.slow_mode_seconds(room.id)), status)
    else:
        response = make_response(render_template(
            "rooms/room.html", **room_context(room, event, body=body, error=error)), status)
    response.vary.add("HX-Request")
    return response


@bp.post("/rooms/<room_id>/messages")
@login_required
@limiter.limit(chat_rate_limit, key_func=per_user_and_room)
def send_message(room_id):
    room, event = services.room_for(current_user, room_id, "chat.send")
    body = request.form.get("body", "")
    try:
        message = services.post_message(room, current_user, body)
    except DomainError as exc:
        db.session.rollback()
        return _form_response(room, event, exc.status, body=body, error=exc.message)
    db.session.commit()
    if message is not None:  # None: Twilio has it, and its webhook announces it
        services.announce_message(message)
    if is_htmx_request():
        return _form_response(room, event)
    return redirect_to(url_for("rooms.show", room_id=room.id) + "#chat")


@bp.errorhandler(RateLimitExceeded)
def too_fast(exc):
    room_id = (request.view_args or {}).get("room_id")
    message = "You are sending messages too quickly. Wait a few seconds and try again."
    if request.endpoint == "rooms.send_message" and room_id:
        room, event = services.room_for(current_user, room_id, "chat.send")
        return _form_response(room, event, 429, body=request.form.get("body", ""), error=message)
    return render_error(429, message)


@bp.post("/rooms/<room_id>/messages/<message_id>/delete")
@login_required
def delete_message(room_id, message_id):
    room, _event = services.room_for(current_user, room_id, "chat.moderate")
    message = services.delete_message(room, message_id, current_user)
    db.session.commit()
    services.announce_deletion(message)
    if is_htmx_request():
        return "", 200
    return redirect_to(url_for("rooms.show", room_id=room.id) + "#chat")


@bp.post("/rooms/<room_id>/mutes")
@login_required
def mute(room_id):
    room, _event = services.room_for(current_user, room_id, "chat.moderate")
    user_id = request.form.get("user_id", "")
    if request.form.get("action") == "unmute":
        services.unmute_user(room, user_id)
    else:
        services.mute_user(room, user_id)
    return _moderation_done(room, "Muted for 10 minutes." if request.form.get("action") != "unmute"
                            else "No longer muted.")


@bp.post("/rooms/<room_id>/slow-mode")
@login_required
def slow_mode(room_id):
    room, _event = services.room_for(current_user, room_id, "chat.moderate")
    try:
        seconds = int(request.form.get("seconds", "0"))
    except ValueError:
        raise DomainError("Slow mode takes a number of seconds.", 422)
    services.set_slow_mode(room, seconds)
    return _moderation_done(room, f"Slow mode: one message per {seconds} s." if seconds else "Slow mode is off.")


@bp.post("/rooms/<room_id>/video/mute")
@login_required
def mute_video(room_id):
    room, _event = services.room_for(current_user, room_id, "chat.moderate")
    muted = services.mute_microphone(room, current_user, request.form.get("user_id", ""))
    return _moderation_done(room, "Their microphone is muted." if muted else "They are not sending sound.")


@bp.post("/rooms/<room_id>/video/remove")
@login_required
def remove_video(room_id):
    room, _event = services.room_for(current_user, room_id, "chat.moderate")
    person = services.remove_from_video(room, current_user, request.form.get("user_id", ""))
    minutes = services.VIDEO_REMOVAL_SECONDS // 60
    return _moderation_done(room, f"{person.label} is out of the video for {minutes} minutes.")


def _moderation_done(room, note):
    if is_htmx_request():
        return render_template("rooms/_moderation_note.html", note=note)
    return redirect_to(url_for("rooms.show", room_id=room.id) + "#chat")


# --- the socket ----------------------------------------------------------------

def same_origin(origin, host):
    """A browser names the page's origin; it must be this host (no cross-site sockets)."""
    if not origin:
        return False
    return urlsplit(origin).netloc.lower() == (host or "").lower()


@bp.before_request
def check_socket():
    """Refuse the upgrade before the handshake: wrong origin, not signed in, no access."""
    if request.endpoint != "rooms.room_socket":
        return None
    if not same_origin(request.headers.get("Origin"), request.host):
        abort(403)
    if not current_user.is_authenticated:
        abort(401)
    room, _event = services.room_for(current_user, request.view_args["room_id"])
    g.socket_connection = {
        "room_id": room.id, "user_id": current_user.id, "label": current_user.label,
        "can_moderate": services.may(current_user, "chat.moderate", room)}
    db.session.close()  # a socket lives for hours: hold no database connection meanwhile
    return None


@sock.route("/rooms/<room_id>/socket", bp=bp)
def room_socket(ws, room_id):
    info = g.socket_connection
    connection = Connection(ws, info["room_id"], info["user_id"], info["label"], info["can_moderate"])
    hub = hub_for(current_app._get_current_object())
    interval = current_app.config.get("ROOM_HEARTBEAT_SECONDS", services.HEARTBEAT_INTERVAL)
    hub.add(connection)
    services.register_presence(room_id, connection.id, connection.user_id, connection.label)
    try:
        last_beat = time.monotonic()
        while True:
            frame = ws.receive(timeout=interval)
            if time.monotonic() - last_beat >= interval:
                services.heartbeat_presence(room_id, connection.id, connection.user_id, connection.label)
                connection.send("<!-- ping -->")  # keeps proxies from closing an idle socket
                last_beat = time.monotonic()
            if frame is not None:
                handle_frame(connection, frame)
    except ConnectionClosed:
        pass
    finally:
        hub.discard(connection)
        services.remove_presence(room_id, connection.id)


def handle_frame(connection, frame):
    """A ping, or a reconnected page asking to catch up; anything else is ignored, never fatal."""
    try:
        data = json.loads(frame)
    except (TypeError, ValueError):
        log.debug("ignored a malformed frame from %s", connection.user_id)
        return
    if not isinstance(data, dict):
        return
    if data.get("type") == "ping":
        connection.send("<!-- pong -->")
    elif data.get("type") == "catch_up":
        catch_up(connection, data.get("last_message_id"))


def catch_up(connection, last_message_id):
    """What a page missed while its socket was down: newer chat (the latest page, when
    its last message is not the latest) and the stage as this person sees it.
    Presence needs nothing: registering the socket again announced it."""
    from app.rooms import stage_routes  # which imports this module
    try:
        messages, has_older = services.chat_history(connection.room_id)
        if messages and messages[-1].id != last_message_id:
            room = db.session.get(Room, connection.room_id)
            connection.send(render_template("rooms/_chat_messages.html", messages=messages, has_older=has_older,
                                            room=room, can_moderate=connection.can_moderate, oob=True))
    finally:
        db.session.remove()  # the socket holds no database connection between frames
    stage_routes.fan_out_stage(hub_for(current_app._get_current_object()), connection.room_id,
                               only_user=connection.user_id)
