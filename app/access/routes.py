"""Invitation links: see what you are invited to, sign in, accept."""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from app.access import services
from app.errors import DomainError
from app.extensions import db
from app.models.base import utcnow

bp = Blueprint("invitations", __name__)


@bp.get("/invitations/<token>")
def show(token):
    invitation = services.invitation_by_token(token)
    problem = None
    try:
        services.check_invitation_usable(invitation)
    except DomainError as exc:
        problem = exc
    return render_template("access/invitation.html", invitation=invitation, token=token,
                           problem=problem, now=utcnow()), problem.status if problem else 200


@bp.post("/invitations/<token>")
@login_required
def accept(token):
    invitation = services.accept_invitation(token, current_user)
    db.session.commit()
    flash(f"Welcome to {invitation.event.name}: you are a {invitation.role.name.lower()}.", "success")
    return redirect(url_for("events.detail", event_id=invitation.event_id))
