"""`flask seed demo`: an organisation, an event and a few people to sign in as."""
from datetime import timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.accounts.services import create_organization, create_personal_account
from app.extensions import db
from app.models import Account, AccountOwner, Event, EventStatus, User
from app.models.base import utcnow

seed = AppGroup("seed", help="Load data for development and benchmarks.")

DEMO_ORG = "Northwind Live"
DEMO_PEOPLE = [
    ("organiser@example.com", "Olivia Organiser", "Olivia"),
    ("host@example.com", "Hugo Host", "Hugo"),
    ("fan@example.com", "Fatima Fan", "Fatima"),
]


def _user(email, name, display_name):
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name, display_name=display_name)
        db.session.add(user)
        db.session.flush()
        user.current_account = create_personal_account(user)
    return user


@seed.command("demo")
def seed_demo():
    """Idempotent: running it twice changes nothing."""
    people = [_user(*person) for person in DEMO_PEOPLE]
    organiser = people[0]
    org = db.session.scalar(select(Account).where(Account.name == DEMO_ORG))
    if org is None:
        org = create_organization(organiser, DEMO_ORG)
        db.session.add(AccountOwner(account=org, user=people[1]))
    if db.session.scalar(select(Event).where(Event.account_id == org.id)) is None:
        starts = (utcnow() + timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
        db.session.add(Event(
            account=org, slug="launch-night", name="Launch Night, live", status=EventStatus.ACTIVE,
            description="An evening of music and conversation, with fans on stage.",
            starts_at=starts, ends_at=starts + timedelta(hours=2), timezone="Europe/London"))
    db.session.commit()
    click.echo(f"Demo data ready: {DEMO_ORG} with an event; sign in as any of "
               + ", ".join(email for email, _, _ in DEMO_PEOPLE)
               + " (the code is printed in the worker's log).")


def register(app):
    app.cli.add_command(seed)
