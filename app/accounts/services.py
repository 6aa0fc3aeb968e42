"""Accounts, their owners, and the user's own profile."""
import secrets

from flask import current_app
from sqlalchemy import delete, exists, func, select

from app.errors import DomainError, NotFound
from app.extensions import db
from app.images import resize_image
from app.integrations import storage
from app.models import Account, AccountKind, AccountOwner, User


def create_personal_account(user):
    account = Account(name=user.label if user.label != "Someone" else "Personal",
                      kind=AccountKind.PERSONAL)
    db.session.add(account)
    db.session.add(AccountOwner(account=account, user=user))
    db.session.flush()
    return account


def create_organization(user, name):
    account = Account(name=name, kind=AccountKind.ORGANIZATION)
    db.session.add(account)
    db.session.add(AccountOwner(account=account, user=user))
    user.current_account = account
    db.session.flush()
    return account


def accounts_of(user):
    return db.session.scalars(
        select(Account).join(AccountOwner).where(AccountOwner.user_id == user.id)
        .order_by(Account.kind.desc(), Account.name)).all()


def is_owner(user, account_id):
    return bool(db.session.scalar(select(exists().where(
        AccountOwner.account_id == account_id, AccountOwner.user_id == user.id))))


def owned_account(user, account_id):
    """The account if the user owns it. Anyone else gets 404: no hint it exists."""
    account = db.session.get(Account, account_id)
    if account is None or not is_owner(user, account_id):
        raise NotFound("There is no such account, or it is not yours.")
    return account


def switch_account(user, account_id):
    user.current_account = owned_account(user, account_id)
    db.session.flush()


def owners_of(account):
    return db.session.scalars(
        select(User).join(AccountOwner).where(AccountOwner.account_id == account.id)
        .order_by(AccountOwner.created_at)).all()


def add_owner(account, email):
    """Make the person with this e-mail an owner; someone new gets a user row that
    their first sign-in with that address will find. Returns the user."""
    from app.auth.services import find_or_create_user

    if account.is_personal:
        raise DomainError("A personal account has a single owner. Create an organisation to share.", 422)
    user = find_or_create_user(email=email)
    if is_owner(user, account.id):
        raise DomainError(f"{email} is already an owner.", 422)
    db.session.add(AccountOwner(account_id=account.id, user_id=user.id))
    db.session.flush()
    return user


def remove_owner(account, user_id):
    """Remove one owner, never the last.

    Two owners removing each other at once must not leave the account ownerless:
    the account row is locked first (PostgreSQL), and the delete itself only
    happens while another owner remains, checked inside the same statement
    (atomic under SQLite's single writer).
    """
    db.session.execute(select(Account.id).where(Account.id == account.id).with_for_update())
    if not is_owner_id(account.id, user_id):
        raise NotFound("That person is not an owner of this account.")
    others = (select(func.count()).select_from(AccountOwner)
              .where(AccountOwner.account_id == account.id, AccountOwner.user_id != user_id)
              .scalar_subquery())
    removed = db.session.execute(
        delete(AccountOwner)
        .where(AccountOwner.account_id == account.id, AccountOwner.user_id == user_id, others > 0)
        .execution_options(synchronize_session=False)).rowcount
    if not removed:
        raise DomainError("An account needs at least one owner. Add another owner first.", 409)
    user = db.session.get(User, user_id)
    if user is not None and user.current_account_id == account.id:
        user.current_account_id = None
        personal = db.session.scalar(
            select(Account).join(AccountOwner)
            .where(AccountOwner.user_id == user_id).order_by(Account.kind.desc()).limit(1))
        user.current_account = personal
    db.session.flush()


def is_owner_id(account_id, user_id):
    return bool(db.session.scalar(select(exists().where(
        AccountOwner.account_id == account_id, AccountOwner.user_id == user_id))))


def rename_account(account, name):
    account.name = name
    db.session.flush()


PROFILE_FIELDS = ("name", "display_name", "pronouns", "location", "birthdate")


def update_profile(user, **fields):
    for key, value in fields.items():
        if key not in PROFILE_FIELDS:
            raise ValueError(f"not a profile field: {key}")
        setattr(user, key, value)
    db.session.flush()


def set_avatar(user, data: bytes):
    """Store the new avatar; returns the key of the old one to delete after commit."""
    size = current_app.config["AVATAR_SIZE"]
    image = resize_image(data, max_bytes=current_app.config["AVATAR_MAX_BYTES"], size=(size, size))
    key = f"avatars/{user.id}-{secrets.token_hex(8)}.webp"
    storage.save(key, image)
    old_key, user.avatar_key = user.avatar_key, key
    db.session.flush()
    return old_key
