"""Organiser pages for the team (invitations) and the participants (grants)."""
import re

from flask import (Response, flash, make_response, redirect, render_template, request, stream_with_context,
                   url_for)
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.utils import secure_filename
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from app.access import services as access
from app.access.decorators import event_permission
from app.auth.services import normalize_email, normalize_phone
from app.errors import DomainError
from app.extensions import db
from app.htmx import is_htmx_request, render_page
from app.jobs.email import queue_email
from app.jobs.sms import queue_text
from app.manage import bp
from app.manage import participants as people
from app.models import Invitation
from app.models.base import utcnow
from app.paging import page_number

INVITATIONS_PAGE_SIZE = 20
PHONE_LIKE = re.compile(r"^[\d\s().+-]+$")


class AccessForm(FlaskForm):
    """Someone (by e-mail or phone), a role and optionally one room: to invite or to grant."""

    contact = StringField("E-mail or mobile number", validators=[
        DataRequired("Enter an e-mail address or a mobile number."),
        Length(max=254, message="That is too long for an e-mail address or a phone number.")])
    # The choices are what the organiser may hand out. Validation only asks for a real
    # role: one above their own goes on to the service, which refuses it with 403.
    role = SelectField("Role", validate_choice=False)
    room = SelectField("Where", validate_choice=False)

    def __init__(self, event, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.event = event
        # No role is preselected: a slip of the mouse should not make someone an owner.
        self.role.choices = [("", "Choose a role")] + [
            (role.id, role.name) for role in access.grantable_roles(current_user, event)]
        self.room.choices = [("", "The whole event")] + [(room.id, room.name) for room in event.rooms]
        self.email = self.phone = None

    def validate_contact(self, field):
        raw = field.data.strip()
        try:
            if "@" in raw:
                self.email = normalize_email(raw)
            elif PHONE_LIKE.match(raw):
                self.phone = normalize_phone(raw)
            else:
                raise ValidationError("Enter an e-mail address, or a mobile number with its country code.")
        except DomainError as exc:
            raise ValidationError(exc.message) from None

    def validate_role(self, field):
        if field.data not in {role.id for role in access.roles_by_rank()}:
            raise ValidationError("Choose a role.")

    def validate_room(self, field):
        if field.data and field.data not in {room.id for room in self.event.rooms}:
            raise ValidationError("That room is not part of this event.")


def _grantable_role_ids(event):
    return {role.id for role in access.grantable_roles(current_user, event)}


def _fragment(template, status=200, trigger=None, **context):
    """An htmx answer; `trigger` names the event other widgets refresh on."""
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    if trigger:
        response.headers["HX-Trigger"] = trigger
    return response


# --- team: invitations --------------------------------------------------------

def _invitations_context(event):
    """The invitations list for the filters in the URL; a bad filter lists nothing and says why."""
    query, status = request.args.get("q") or "", request.args.get("status") or ""
    context = dict(query=query.strip(), status_filter=status, statuses=access.INVITATION_STATUSES, invitations=[],
                   total=0, page=1, page_size=INVITATIONS_PAGE_SIZE, filter_error=None, now=utcnow(),
                   grantable=_grantable_role_ids(event))
    try:
        if status and status not in access.INVITATION_STATUSES:
            raise DomainError("There is no such invitation status.", 422)
        context["invitations"], context["total"], context["page"] = access.list_invitations(
            event, people.search_query(query), status, page_number(), INVITATIONS_PAGE_SIZE)
    except DomainError as exc:
        context["filter_error"] = exc.message
    return context


def _team_page(event, fragment, status=200, form=None, **extra):
    context = _invitations_context(event)
    if context["filter_error"]:
        status = 422
    return render_page("manage/team.html", fragment, status=status, event=event, mode="invite",
                       form=form or AccessForm(event, formdata=None), **context, **extra)


@bp.get("/events/<event_id>/team")
@event_permission("team.manage")
def team(event):
    return _team_page(event, "manage/_invitations.html")


@bp.post("/events/<event_id>/invitations")
@event_permission("team.manage")
def invite(event):
    form = AccessForm(event)
    if not form.validate_on_submit():
        return _team_page(event, "manage/_invite_form.html", 422, form=form)
    try:
        invitation, token = access.invite(event, current_user, form.role.data, email=form.email,
                                          phone=form.phone, room_id=form.room.data or None)
    except DomainError as exc:
        db.session.rollback()
        return _team_page(event, "manage/_invite_form.html", exc.status, form=form, error=exc.message)
    db.session.commit()
    _send_invitation(invitation, token)
    notice = f"Invitation sent to {invitation.email or invitation.phone}."
    if is_htmx_request():
        return _fragment("manage/_invite_form.html", trigger="invitations-changed", event=event, mode="invite",
                         form=AccessForm(event, formdata=None), notice=notice)
    flash(notice, "success")
    return redirect(url_for("manage.team", event_id=event.id))


def _send_invitation(invitation, token):
    """After the commit: the link goes out by e-mail or text. Only the message carries
    the token (the database keeps its hash), and job descriptions never show it."""
    link = url_for("invitations.show", token=token, _external=True)
    inviter = current_user.label
    event, role = invitation.event, invitation.role.name
    where = f" in {invitation.room.name}" if invitation.room else ""
    if invitation.email:
        queue_email(invitation.email, f"You're invited to {event.name}",
                    f"{inviter} invites you to {event.name} on Eventuall, as {role}{where}.\n\n"
                    f"Open this link to accept: {link}\n\n"
                    f"It works once, until {invitation.expires_at:%d %B %Y}. "
                    "If you did not expect it, you can ignore this message.")
    else:
        queue_text(invitation.phone, f"{inviter} invites you to {event.name} on Eventuall as {role}{where}: {link}")


@bp.post("/events/<event_id>/invitations/<invitation_id>/revoke")
@event_permission("team.manage")
def revoke_invitation(event, invitation_id):
    try:
        invitation = access.revoke_invitation(event, invitation_id, current_user)
    except DomainError as exc:
        db.session.rollback()
        invitation = db.session.get(Invitation, invitation_id)
        if not is_htmx_request() or invitation is None or invitation.event_id != event.id:
            raise
        return _invitation_row(event, invitation, exc.status, row_error=exc.message)
    db.session.commit()
    if is_htmx_request():
        return _invitation_row(event, invitation)
    flash(f"The invitation to {invitation.email or invitation.phone} is withdrawn.", "success")
    return redirect(url_for("manage.team", event_id=event.id))


def _invitation_row(event, invitation, status=200, **extra):
    return _fragment("manage/_invitation_row.html", status, event=event, invitation=invitation, now=utcnow(),
                     grantable=_grantable_role_ids(event), **extra)


# --- participants: grants -------------------------------------------------------

def _participants_page(event, fragment, status=200, form=None, **extra):
    # The raw values go back into the filter form, so a refused filter can be corrected.
    query, role_id, room_id = (request.args.get(name) or "" for name in ("q", "role", "room"))
    try:
        result = people.participants_page(event, people.participant_filters(event, query, role_id, room_id),
                                          page_number())
        filter_error = None
    except DomainError as exc:
        result, filter_error, status = people.ParticipantsPage([], 0, 1, 1), exc.message, exc.status
    can_manage_team = access.can(current_user, "team.manage", event)
    return render_page("manage/participants.html", fragment, status=status, event=event, mode="grant",
                       result=result,
                       query=query.strip(), role_id=role_id, room_id=room_id, filter_error=filter_error,
                       roles=access.roles_by_rank(), page_size=people.PAGE_SIZE,
                       can_manage_team=can_manage_team,
                       grantable=_grantable_role_ids(event) if can_manage_team else set(),
                       form=form or (AccessForm(event, formdata=None) if can_manage_team else None), **extra)


@bp.get("/events/<event_id>/participants")
@event_permission("participants.view")
def participants(event):
    return _participants_page(event, "manage/_participants.html")


@bp.get("/events/<event_id>/participants.csv")
@event_permission("participants.view")
def participants_csv(event):
    filters = people.participant_filters(event, *(request.args.get(name) for name in ("q", "role", "room")))
    response = Response(stream_with_context(people.participants_csv(event, filters)),
                        mimetype="text/csv", headers={"Cache-Control": "private, no-store"})
    filename = f"{secure_filename(event.slug) or 'event'}-participants.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.post("/events/<event_id>/participants")
@event_permission("team.manage")
def grant(event):
    form = AccessForm(event)
    if not form.validate_on_submit():
        return _participants_page(event, "manage/_invite_form.html", 422, form=form)
    try:
        new_grant = access.grant_manually(event, current_user, form.role.data, email=form.email,
                                          phone=form.phone, room_id=form.room.data or None)
    except DomainError as exc:
        db.session.rollback()
        return _participants_page(event, "manage/_invite_form.html", exc.status, form=form, error=exc.message)
    db.session.commit()
    where = f" in {new_grant.room.name}" if new_grant.room else ""
    notice = f"{form.email or form.phone} is now {new_grant.role.name}{where}."
    if is_htmx_request():
        return _fragment("manage/_invite_form.html", trigger="participants-changed", event=event, mode="grant",
                         form=AccessForm(event, formdata=None), notice=notice)
    flash(notice, "success")
    return redirect(url_for("manage.participants", event_id=event.id))


@bp.post("/events/<event_id>/participants/<grant_id>/revoke")
@event_permission("team.manage")
def revoke_grant(event, grant_id):
    try:
        access.revoke_grant(event, grant_id, current_user)
    except DomainError as exc:
        db.session.rollback()
        if not is_htmx_request():
            raise
        return _fragment("manage/_participant_row.html", exc.status, event=event,
                         row=people.participant(event, grant_id), row_error=exc.message, can_manage_team=True,
                         grantable=_grantable_role_ids(event))
    db.session.commit()
    if is_htmx_request():
        response = make_response("", 200)  # swapped for the row: htmx drops it
        response.vary.add("HX-Request")
        return response
    flash("The access is revoked.", "success")
    return redirect(url_for("manage.participants", event_id=event.id))
