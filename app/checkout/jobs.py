"""Hold expiry: one job scheduled at each hold's expiry, and a sweep for any the
scheduler missed (a worker down at the time, a lost job). Both are idempotent."""
import logging

from app.checkout import services
from app.extensions import db, redis

log = logging.getLogger(__name__)
SWEEP_BATCH = 1000


def expire_hold_job(hold_id):
    if services.expire_hold(hold_id):
        db.session.commit()
        return True
    db.session.rollback()
    return False


def sweep_expired_holds():
    expired = 0
    while True:
        count = services.expire_due_holds(batch=SWEEP_BATCH)
        db.session.commit()  # per batch: short transactions, counters released early
        expired += count
        if count < SWEEP_BATCH:
            break
    if expired:
        log.info("sweep expired %d hold(s) the scheduler had not", expired)
    return expired


def schedule_hold_expiry(hold):
    """After the commit: run expire_hold_job at the hold's expiry."""
    redis.queue().enqueue_at(hold.expires_at, expire_hold_job, hold.id,
                             job_id=f"expire-hold-{hold.id}", description=f"expire hold {hold.id}")
