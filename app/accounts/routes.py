"""The signed-in user's dashboard, profile and accounts (organisations, owners)."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.access.services import events_of_user
from app.accounts import services
from app.accounts.forms import AccountForm, AvatarForm, OwnerForm, ProfileForm
from app.auth.services import normalize_email, recent_sign_ins
from app.errors import DomainError
from app.events.services import events_of_account
from app.extensions import db
from app.htmx import redirect_to, render_page
from app.integrations import storage
from app.jobs.email import queue_email

bp = Blueprint("accounts", __name__)


@bp.before_request
@login_required
def require_login():
    pass


@bp.get("/dashboard")
def dashboard():
    account = current_user.current_account
    events = events_of_account(account.id) if account else []
    return render_template("accounts/dashboard.html", account=account, events=events,
                           my_events=events_of_user(current_user))


def _profile_page(status=200, form=None, avatar_form=None, saved=False, avatar_error=None):
    return render_page("accounts/profile.html", "accounts/_profile_form.html", status=status,
                       form=form or ProfileForm(formdata=None, obj=current_user),
                       avatar_form=avatar_form or AvatarForm(formdata=None),
                       saved=saved, avatar_error=avatar_error,
                       sign_ins=recent_sign_ins(current_user.id))


@bp.get("/profile")
def profile():
    return _profile_page()


@bp.post("/profile")
def update_profile():
    form = ProfileForm()
    if not form.validate_on_submit():
        return _profile_page(422, form=form)
    services.update_profile(current_user, **form.profile_fields())
    db.session.commit()
    return _profile_page(form=ProfileForm(formdata=None, obj=current_user), saved=True)


@bp.post("/profile/avatar")
def upload_avatar():
    form = AvatarForm()
    if not form.validate_on_submit():
        return _profile_page(400, avatar_error="This form has expired. Reload and try again.")
    upload = request.files.get("avatar")
    try:
        old_key = services.set_avatar(current_user, upload.read() if upload else b"")
    except DomainError as exc:
        db.session.rollback()
        return _profile_page(exc.status, avatar_error=exc.message)
    db.session.commit()
    if old_key:
        storage.delete(old_key)
    flash("Your new picture is up.", "success")
    return redirect(url_for("accounts.profile"))


@bp.get("/accounts")
def index():
    return render_template("accounts/index.html", accounts=services.accounts_of(current_user),
                           form=AccountForm())


@bp.post("/accounts")
def create():
    form = AccountForm()
    if not form.validate_on_submit():
        return render_template("accounts/index.html", accounts=services.accounts_of(current_user),
                               form=form), 422
    account = services.create_organization(current_user, form.name.data.strip())
    db.session.commit()
    flash(f"{account.name} is created, and it is your current account.", "success")
    return redirect(url_for("accounts.settings", account_id=account.id))


@bp.post("/accounts/<account_id>/switch")
def switch(account_id):
    services.switch_account(current_user, account_id)
    db.session.commit()
    flash(f"You are now working in {current_user.current_account.name}.", "info")
    return redirect_to(url_for("accounts.dashboard"))


def _settings_page(account, status=200, form=None, owner_form=None, owner_error=None, owner_notice=None):
    return render_page("accounts/settings.html", "accounts/_owners.html", status=status,
                       account=account, form=form or AccountForm(formdata=None, obj=account),
                       owner_form=owner_form or OwnerForm(formdata=None), owner_error=owner_error,
                       owner_notice=owner_notice, owners=services.owners_of(account))


@bp.get("/accounts/<account_id>")
def settings(account_id):
    return _settings_page(services.owned_account(current_user, account_id))


@bp.post("/accounts/<account_id>")
def rename(account_id):
    account = services.owned_account(current_user, account_id)
    form = AccountForm()
    if not form.validate_on_submit():
        return _settings_page(account, 422, form=form)
    services.rename_account(account, form.name.data.strip())
    db.session.commit()
    flash("The account is renamed.", "success")
    return redirect(url_for("accounts.settings", account_id=account.id))


@bp.post("/accounts/<account_id>/owners")
def add_owner(account_id):
    account = services.owned_account(current_user, account_id)
    form = OwnerForm()
    if not form.validate_on_submit():
        error = next(iter(form.errors.values()))[0]
        return _settings_page(account, 422, owner_form=form, owner_error=error)
    try:
        owner = services.add_owner(account, normalize_email(form.email.data))
    except DomainError as exc:
        db.session.rollback()
        return _settings_page(account, exc.status, owner_form=form, owner_error=exc.message)
    db.session.commit()
    queue_email(owner.email, f"You are now an owner of {account.name} on Eventuall",
                f"{current_user.label} added you as an owner of {account.name}.\n\n"
                f"Sign in with this address to manage it: {url_for('auth.login', _external=True)}")
    return _settings_page(account, owner_notice=f"{owner.email} is now an owner.")


@bp.post("/accounts/<account_id>/owners/<user_id>/remove")
def remove_owner(account_id, user_id):
    account = services.owned_account(current_user, account_id)
    try:
        services.remove_owner(account, user_id)
    except DomainError as exc:
        db.session.rollback()
        return _settings_page(account, exc.status, owner_error=exc.message)
    db.session.commit()
    if user_id == current_user.id:
        flash(f"You are no longer an owner of {account.name}.", "info")
        return redirect_to(url_for("accounts.index"))
    return _settings_page(account, owner_notice="The owner is removed.")
