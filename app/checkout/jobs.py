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

from app.checkout import services
from app.extensions import db, redis

log = logging.getLogger(__name__)
BATCH = 1000
MARKER_TTL = 3600  # seconds a "job scheduled for this second" marker outlives its second


def expire_due_holds_job():
    """Expire every hold due by now, in short transactions. Returns how many."""
    expired = 0
    while True:
        count = services.expire_due_holds(batch=BATCH)
        db.session.commit()  # per batch: counters released early, locks held briefly
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
