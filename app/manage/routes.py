"""Organiser pages for events, rooms and ticket types.

htmx swaps the fragments; without htmx the same forms post and redirect. A
rule that says no answers with the form and its message (422, or 409 for a
change the event's state does not allow), never with a half-written change.
"""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.access.decorators import event_permission
from app.access.services import can
from app.errors import DomainError
from app.extensions import db
from app.htmx import is_htmx_request, redirect_to, render_page
from app.integrations import storage
from app.manage import bp, services
from app.paging import page_number
from app.manage.forms import EventForm, NewRoomForm, RoomForm, TicketTypeForm
from app.models import EventStatus


def _reject(form, exc):
    """Undo the attempt and show the rule's message next to its field (or above the form)."""
    db.session.rollback()
    field = getattr(exc, "field", None)
    if field in form:
        form[field].errors.append(exc.message)
    else:
        form.form_errors.append(exc.message)


@bp.get("")
@login_required
def dashboard():
    account = current_user.current_account
    status = request.args.get("status") if request.args.get("status") in set(EventStatus) else None
    query = (request.args.get("q") or "").strip()[:100]
    page = page_number()
    rows, total = services.dashboard_events(account.id, status, query, page) if account else ([], 0)
    return render_template("manage/dashboard.html", account=account, rows=rows, total=total, page=page,
                           page_size=services.PAGE_SIZE, status=status, query=query,
                           counts=services.status_counts(account.id) if account else {})


# --- events ----------------------------------------------------------------------------

@bp.route("/events/new", methods=["GET", "POST"])
@login_required
def new_event():
    account = services.account_for_new_event(current_user)
    form = EventForm()

    def page(status):
        return render_page("manage/new_event.html", "manage/_event_form.html", status,
                           form=form, account=account, event=None)

    if request.method == "GET":
        return page(200)
    if not form.validate_on_submit():
        return page(422)
    try:
        event = services.create_event(account, **form.event_fields())
    except DomainError as exc:
        _reject(form, exc)
        return page(exc.status)
    db.session.commit()
    flash(f"{event.name} is created as a draft, with a main stage and a backstage.", "success")
    return redirect_to(url_for("manage.event", event_id=event.id))


def _event_page(event, fragment="manage/_event_form.html", status=200, **context):
    context.setdefault("form", EventForm.for_event(event))
    return render_page("manage/event.html", fragment, status, event=event,
                       can_delete=can(current_user, "event.delete", event),
                       cover_size=services.COVER_SIZE, cover_max_mb=services.COVER_MAX_BYTES // (1024 * 1024),
                       **context)


@bp.get("/events/<event_id>")
@event_permission("event.manage")
def event(event):
    return _event_page(event)


@bp.post("/events/<event_id>")
@event_permission("event.manage")
def update_event(event):
    form = EventForm()
    if not form.validate_on_submit():
        return _event_page(event, status=422, form=form)
    try:
        services.update_event(event, **form.event_fields())
    except DomainError as exc:
        _reject(form, exc)
        return _event_page(event, status=exc.status, form=form)
    db.session.commit()
    flash("The event is saved.", "success")
    return redirect_to(url_for("manage.event", event_id=event.id))


def _change_status(event, change, done_message):
    try:
        change(event)
    except DomainError as exc:
        db.session.rollback()
        return _event_page(event, "manage/_event_status.html", exc.status, status_error=exc.message)
    db.session.commit()
    flash(done_message, "success")
    return redirect_to(url_for("manage.event", event_id=event.id))


@bp.post("/events/<event_id>/publish")
@event_permission("event.manage")
def publish_event(event):
    return _change_status(event, services.publish_event, "The event is published: its page is public.")


@bp.post("/events/<event_id>/archive")
@event_permission("event.manage")
def archive_event(event):
    return _change_status(event, services.archive_event, "The event is archived.")


@bp.post("/events/<event_id>/delete")
@event_permission("event.delete")
def delete_event(event):
    name = event.name
    try:
        cover_key = services.delete_event(event)
    except DomainError as exc:
        db.session.rollback()
        return _event_page(event, "manage/_event_status.html", exc.status, status_error=exc.message)
    db.session.commit()
    if cover_key:
        storage.delete(cover_key)
    flash(f"{name} is deleted.", "success")
    return redirect_to(url_for("manage.dashboard"))


@bp.post("/events/<event_id>/cover")
@event_permission("event.manage")
def upload_cover(event):
    upload = request.files.get("cover")
    try:
        old_key = services.set_cover(event, upload.read() if upload else b"")
    except DomainError as exc:
        db.session.rollback()
        return _event_page(event, "manage/_cover.html", exc.status, cover_error=exc.message)
    db.session.commit()
    if old_key:
        storage.delete(old_key)
    flash("The cover image is updated.", "success")
    return redirect_to(url_for("manage.event", event_id=event.id))


# --- rooms ----------------------------------------------------------------------------------

def _rooms_page(event, fragment="manage/_rooms.html", status=200, **context):
    context.setdefault("form", NewRoomForm(formdata=None))
    return render_page("manage/rooms.html", fragment, status, event=event,
                       rooms=services.rooms_of(event), **context)


def _rooms_changed(event, message):
    """htmx gets the fresh list; a plain form post redirects, so a reload does not repeat it."""
    if is_htmx_request():
        return _rooms_page(event, notice=message)
    flash(message, "success")
    return redirect(url_for("manage.rooms", event_id=event.id))


@bp.get("/events/<event_id>/rooms")
@event_permission("event.manage")
def rooms(event):
    return _rooms_page(event)


@bp.post("/events/<event_id>/rooms")
@event_permission("event.manage")
def add_room(event):
    form = NewRoomForm()
    if not form.validate_on_submit():
        return _rooms_page(event, status=422, form=form)
    try:
        room = services.add_room(event, **form.room_fields())
    except DomainError as exc:
        _reject(form, exc)
        return _rooms_page(event, status=exc.status, form=form)
    db.session.commit()
    return _rooms_changed(event, f"{room.name} is added.")


@bp.get("/events/<event_id>/rooms/<room_id>/edit")
@event_permission("event.manage")
def edit_room(event, room_id):
    room = services.room_of(event, room_id)
    return _rooms_page(event, "manage/_room_edit_row.html", room=room, editing=room,
                       edit_form=RoomForm(formdata=None, obj=room))


@bp.post("/events/<event_id>/rooms/<room_id>")
@event_permission("event.manage")
def update_room(event, room_id):
    room = services.room_of(event, room_id)
    form = RoomForm()
    if not form.validate_on_submit():
        return _rooms_page(event, "manage/_room_edit_row.html", 422, room=room, editing=room, edit_form=form)
    services.update_room(room, **form.room_fields())
    db.session.commit()
    if is_htmx_request():
        return _rooms_page(event, "manage/_room_row.html", room=room)
    flash(f"{room.name} is saved.", "success")
    return redirect(url_for("manage.rooms", event_id=event.id))


@bp.post("/events/<event_id>/rooms/<room_id>/move")
@event_permission("event.manage")
def move_room(event, room_id):
    room = services.room_of(event, room_id)
    direction = request.form.get("direction")
    services.move_room(room, direction)
    db.session.commit()
    return _rooms_changed(event, f"{room.name} is moved {direction}.")


@bp.post("/events/<event_id>/rooms/<room_id>/delete")
@event_permission("event.manage")
def delete_room(event, room_id):
    room = services.room_of(event, room_id)
    name = room.name
    try:
        services.delete_room(room)
    except DomainError as exc:
        db.session.rollback()
        return _rooms_page(event, "manage/_room_row.html", exc.status, room=room,
                           room_error=(room.id, exc.message))
    db.session.commit()
    if is_htmx_request():
        return ""  # the row swaps itself out
    flash(f"{name} is deleted.", "success")
    return redirect(url_for("manage.rooms", event_id=event.id))


# --- ticket types -------------------------------------------------------------------------------

@bp.get("/events/<event_id>/tickets")
@event_permission("event.manage")
def ticket_types(event):
    return render_page("manage/ticket_types.html", "manage/_ticket_types.html", event=event,
                       ticket_types=event.ticket_types)


def _ticket_type_page(event, form, status=200, ticket_type=None):
    return render_page("manage/ticket_type.html", "manage/_ticket_type_form.html", status,
                       event=event, form=form, ticket_type=ticket_type)


@bp.route("/events/<event_id>/tickets/new", methods=["GET", "POST"])
@event_permission("event.manage")
def new_ticket_type(event):
    if request.method == "GET":
        return _ticket_type_page(event, TicketTypeForm.for_new(event))
    form = TicketTypeForm(event)
    if not form.validate_on_submit():
        return _ticket_type_page(event, form, 422)
    try:
        ticket_type = services.create_ticket_type(event, **form.ticket_type_fields())
    except DomainError as exc:
        _reject(form, exc)
        return _ticket_type_page(event, form, exc.status)
    db.session.commit()
    flash(f"{ticket_type.name} is added.", "success")
    return redirect_to(url_for("manage.ticket_types", event_id=event.id))


@bp.get("/events/<event_id>/tickets/<ticket_type_id>")
@event_permission("event.manage")
def edit_ticket_type(event, ticket_type_id):
    ticket_type = services.ticket_type_of(event, ticket_type_id)
    return _ticket_type_page(event, TicketTypeForm.for_ticket_type(ticket_type), ticket_type=ticket_type)


@bp.post("/events/<event_id>/tickets/<ticket_type_id>")
@event_permission("event.manage")
def update_ticket_type(event, ticket_type_id):
    ticket_type = services.ticket_type_of(event, ticket_type_id)
    form = TicketTypeForm(event)
    if not form.validate_on_submit():
        return _ticket_type_page(event, form, 422, ticket_type)
    try:
        services.update_ticket_type(ticket_type, **form.ticket_type_fields())
    except DomainError as exc:
        _reject(form, exc)
        return _ticket_type_page(event, form, exc.status, ticket_type)
    db.session.commit()
    flash(f"{ticket_type.name} is saved.", "success")
    return redirect_to(url_for("manage.ticket_types", event_id=event.id))
