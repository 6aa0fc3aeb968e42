"""Hold expiry: one job per second in which holds fall due, and a sweep for any
the scheduler missed (a worker down at the time, a lost job). Both run the same
set-based expiry, so a job that runs twice, late or beside the sweep releases
nothing twice.

One job per second rather than per hold: a drop of 10,000 buyers schedules a few
hundred jobs, each expiring its whole second's holds in a few statements, so a
rush expires on time instead of queueing thousands of one-row jobs.
"""
import logging
import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app, has_request_context, url_for

from app.checkout import services, waitlist
from app.extensions import db, redis
from app.jobs.email import queue_email
from app.jobs.sms import queue_text

log = logging.getLogger(__name__)
BATCH = 1000
MARKER_TTL = 3600  # seconds a "job scheduled for this second" marker outlives its second


def expire_due_holds_job():
    """Expire every hold due by now, in short transactions. Returns how many.

    The expiry promotes the waitlist in the same transaction; the offers it made
    are mailed (and their own expiry scheduled) after each commit."""
    expired = 0
    while True:
        count = services.expire_due_holds(batch=BATCH)
        db.session.commit()  # per batch: counters released early, locks held briefly
        notify_waitlist_offers()
        expired += count
        if count < BATCH:
            return expired


def sweep_expired_holds():
    expired = expire_due_holds_job()
    if expired:
        log.info("sweep expired %d hold(s) the scheduler had not", expired)
    return expired


def expiry_job_id(expires_at):
    return f"expire-holds-{math.ceil(expires_at.timestamp())}"


def schedule_hold_expiry(hold):
    """After the commit: make sure a job runs at the second the hold falls due.

    The first hold of each second schedules it (SET NX on a marker); the others
    find it there. A hold whose expiry moves (a card payment) gets its new second's job.
    """
    due = math.ceil(hold.expires_at.timestamp())
    if redis.set(f"hold-expiry-scheduled:{due}", 1, nx=True, exat=due + MARKER_TTL):
        redis.queue().enqueue_at(datetime.fromtimestamp(due, UTC), expire_due_holds_job,
                                 job_id=expiry_job_id(hold.expires_at),
                                 description=f"expire holds due at {due}")


# Waitlist ---------------------------------------------------------------------

def promote_waitlists_job():
    """The sweep for seats freed by a path that does not promote (a Stripe session
    ending, a raised capacity): each ticket type in its own short transaction."""
    offers = 0
    for ticket_type_id in waitlist.ticket_types_to_promote():
        offers += len(waitlist.promote_waitlist(ticket_type_id))
        db.session.commit()
    notify_waitlist_offers()
    return offers


def notify_waitlist_offers():
    """After the commit that made offers: tell each person once and schedule the offer's expiry.

    Idempotent and safe beside itself: each offer is claimed by a conditional UPDATE,
    committed, and only then its message queued. Returns how many were claimed."""
    entries = [entry for entry in waitlist.claim_offer_notices() if entry.hold is not None]
    if not entries:
        db.session.rollback()  # end the read-only transaction
        return 0
    outgoing = [(entry.hold, _offer_message(entry)) for entry in entries]  # built while the rows are loaded
    db.session.commit()
    for hold, (send, to, *message) in outgoing:
        schedule_hold_expiry(hold)
        if to:
            send(to, *message)
    return len(outgoing)


def _checkout_link(hold_id):
    if has_request_context():
        return url_for("checkout.show", hold_id=hold_id, _external=True)
    with current_app.test_request_context("/"):  # a job: SERVER_NAME gives the host
        return url_for("checkout.show", hold_id=hold_id, _external=True)


def _offer_message(entry):
    """(queue function, address, message...): by e-mail, or by text to someone who
    signed up with a phone number only."""
    hold, event, ticket_type, user = entry.hold, entry.event, entry.ticket_type, entry.user
    until = hold.expires_at.astimezone(ZoneInfo(event.timezone))
    link = _checkout_link(hold.id)
    if not user.email:
        return (queue_text, user.phone,
                f"{hold.quantity} × {ticket_type.name} for {event.name} came free and are reserved for you "
                f"until {until:%H:%M} ({event.timezone}): {link}")
    fewer = (f"You asked for {entry.quantity}; these are the seats that came free first.\n\n"
             if hold.quantity < entry.quantity else "")
    return (queue_email, user.email, f"Tickets for {event.name} are waiting for you",
            f"Good news: {hold.quantity} × {ticket_type.name} for {event.name} came free, and we have "
            f"reserved {'it' if hold.quantity == 1 else 'them'} for you from the waitlist.\n\n{fewer}"
            f"Complete your order by {until:%H:%M} ({event.timezone}) on {until:%d %b}; after that "
            f"the seats go to the next person in line:\n{link}\n")
