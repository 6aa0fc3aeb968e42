"""The RQ worker class and the periodic jobs it keeps going."""
import threading

from rq import SimpleWorker

from app.extensions import db, redis

SWEEP_EVERY_SECONDS = 30


class AppWorker(SimpleWorker):
    """Runs jobs in this process (no fork per job: thousands of short expiry jobs
    would spend their time forking) and gives each job a fresh DB session."""

    def perform_job(self, job, queue):
        try:
            return super().perform_job(job, queue)
        finally:
            db.session.remove()


def start_periodic_sweeps(stop: threading.Event):
    """Enqueue the sweeps every SWEEP_EVERY_SECONDS (holds past their expiry, seats
    freed for a waitlist, stage timers run out) for whatever the scheduler missed;
    with several workers the Redis lock lets one of them do it each time."""
    from app.checkout.jobs import promote_waitlists_job, sweep_expired_holds
    from app.rooms.stage import sweep_overdue_appearances

    def loop():
        while not stop.wait(SWEEP_EVERY_SECONDS):
            if redis.set("periodic:sweeps", "1", nx=True, ex=SWEEP_EVERY_SECONDS - 1):
                for sweep in (sweep_expired_holds, promote_waitlists_job, sweep_overdue_appearances):
                    redis.queue().enqueue(sweep, description=sweep.__name__)

    thread = threading.Thread(target=loop, name="periodic-sweeps", daemon=True)
    thread.start()
    return thread
