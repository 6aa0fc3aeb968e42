"""Hold expiry: 10,000 holds come due within --spread seconds (default 0: all at the
same moment); the real worker
(`python worker.py`: RQ SimpleWorker, its scheduler, the periodic sweep) releases them.

    .venv/bin/python bench/expiry.py                       # both databases
    .venv/bin/python bench/expiry.py --db postgres --holds 2000 --lifetime 30

The holds are made through the service (checkout.services.hold_seats, commits of
500) with a hold lifetime of --lifetime seconds instead of HOLD_MINUTES (an app
override in this process only: `HOLD_MINUTES` is whole minutes), created "at" instants
spread evenly over [T0, T0 + spread] so they expire over [T0 + lifetime, T0 + lifetime
+ spread], and each is scheduled exactly as the route does it
(checkout.jobs.schedule_hold_expiry: one job per second in which holds fall due).

Measured per hold: lateness = ended_at - expires_at. Goal: every hold released
within lifetime + 10 s, i.e. max lateness <= 10 s.
Invariants (exit 1 if broken): every hold ends `expired`, none early, none released
twice (releases reported by the jobs and the sweeps add up to the holds), the
counter `held` ends at 0, equals the active holds in every snapshot taken while the
worker runs and is never negative, no failed job, no "database is locked" or
Traceback in the worker's log.
"""
import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as c  # noqa: E402

BATCH = 500


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--holds", type=int, default=10_000)
    p.add_argument("--lifetime", type=float,
                   help="seconds from T0 (start of hold creation) to expiry; default 20 s + 15 ms per hold, "
                        "so that making and scheduling them is over well before they come due")
    p.add_argument("--spread", type=float, default=0.0,
                   help="seconds over which the holds' expiry times are spread (default 0: all at once)")
    p.add_argument("--grace", type=float, default=240.0,
                   help="how long past expiry + 10 s to keep waiting for stragglers (default 240)")
    p.add_argument("--workers", type=int, default=1,
                   help="how many `python worker.py` processes (default 1, as the Procfile)")
    p.add_argument("--py-spy", metavar="PATH", help="profile the (first) worker with this py-spy binary")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def setup_data(app, holds):
    """An active event, one ticket type with a seat per hold, a buyer per hold."""
    from sqlalchemy import insert

    from app.accounts.services import create_organization
    from app.extensions import db
    from app.models import Event, EventStatus, Room, RoomKind, TicketType, User
    from app.models.base import new_id, utcnow

    with app.app_context():
        organiser = User(email="organiser@bench.example")
        db.session.add(organiser)
        db.session.flush()
        account = create_organization(organiser, "Bench Live")
        starts = utcnow() + timedelta(days=7)
        event = Event(account_id=account.id, slug="drop", name="The Drop", status=EventStatus.ACTIVE,
                      starts_at=starts, ends_at=starts + timedelta(hours=2))
        event.rooms = [Room(name="Main stage", kind=RoomKind.MAIN, is_main_room=True)]
        ticket_type = TicketType(event=event, name="General admission", capacity=holds, max_per_order=10)
        ticket_type.rooms = [event.rooms[0]]
        db.session.add(event)
        user_ids = [new_id() for _ in range(holds)]
        db.session.execute(insert(User), [{"id": uid, "email": f"buyer{i}@bench.example"}
                                          for i, uid in enumerate(user_ids)])
        db.session.commit()
        return ticket_type.id, user_ids


def create_holds(app, ticket_type_id, user_ids, t0, spread):
    """hold_seats for every buyer "at" t0 + its share of spread, commit per batch, then
    schedule each expiry."""
    from app.checkout import services
    from app.checkout.jobs import schedule_hold_expiry
    from app.extensions import db

    making = scheduling = 0.0
    with app.app_context():
        for start in range(0, len(user_ids), BATCH):
            t = time.perf_counter()
            batch = [services.hold_seats(SimpleNamespace(id=uid), ticket_type_id, 1,
                                         now=t0 + timedelta(seconds=spread * (start + i) / len(user_ids)))
                     for i, uid in enumerate(user_ids[start:start + BATCH])]
            db.session.commit()
            making += time.perf_counter() - t
            t = time.perf_counter()
            for hold in batch:
                schedule_hold_expiry(hold)  # as the route does, after the commit
            scheduling += time.perf_counter() - t
            db.session.expunge_all()
        db.session.remove()
    return making, scheduling


def snapshot(app, ticket_type_id):
    """(held, active holds) in one statement, so one consistent read on both databases."""
    from sqlalchemy import text

    from app.extensions import db

    with app.app_context():
        row = db.session.execute(text(
            "SELECT held, (SELECT count(*) FROM holds WHERE ticket_type_id = :id AND status = 'active') "
            "FROM ticket_types WHERE id = :id"), {"id": ticket_type_id}).one()
        db.session.remove()
    return tuple(row)


def job_results(app):
    """What the finished jobs said: releases by expiry jobs, by sweeps; failed jobs."""
    from rq.job import Job

    from app.extensions import redis

    with app.app_context():
        queue = redis.queue()
        ids = queue.finished_job_registry.get_job_ids()
        by_job = by_sweep = jobs = sweeps = 0
        for start in range(0, len(ids), 1000):
            for job in Job.fetch_many(ids[start:start + 1000], connection=redis.client):
                if job is None:
                    continue
                value = job.return_value()
                if job.func_name.endswith("expire_due_holds_job"):
                    jobs += 1
                    by_job += value or 0
                elif job.func_name.endswith("sweep_expired_holds"):
                    sweeps += 1
                    by_sweep += value or 0
        return {"expiry jobs run": jobs, "released by jobs": by_job, "sweeps run": sweeps,
                "released by sweeps": by_sweep, "failed jobs": queue.failed_job_registry.count,
                "still scheduled": queue.scheduled_job_registry.count, "still queued": queue.count}


def child(args):
    instance = c.make_instance_dir(args.db)
    env = c.bench_env(args.db, instance)
    c.use_env(env)
    c.reset_databases(args.db, env)
    c.quiet_logs()

    from sqlalchemy import select

    from app import create_app
    from app.extensions import db
    from app.models import Hold
    from app.models.base import utcnow

    if args.lifetime is None:
        args.lifetime = 20 + 0.015 * args.holds
    app = create_app(HOLD_MINUTES=args.lifetime / 60)  # this process only: the holds it makes
    ticket_type_id, user_ids = setup_data(app, args.holds)

    workers = []
    failures = []
    min_held = None
    mismatches = 0
    spy = profile = None
    try:
        for i in range(args.workers):
            workers.append(c.Process(f"worker{i}", [c.PYTHON, "worker.py"], env, instance))
        worker = workers[0]
        deadline = time.monotonic() + 60
        while not (all("Listening on" in w.stderr_text() for w in workers)
                   and any("Scheduler for" in w.stderr_text() for w in workers)):
            if not all(w.alive() for w in workers) or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{worker.stderr_text()[-3000:]}")
            time.sleep(0.2)

        t0 = utcnow()
        expires_at = t0 + timedelta(seconds=args.lifetime)
        making, scheduling = create_holds(app, ticket_type_id, user_ids, t0, args.spread)
        created = utcnow()
        ahead = (expires_at - created).total_seconds()
        print(f"{args.holds} holds made (hold_seats) in {making:.1f} s and scheduled (schedule_hold_expiry) "
              f"in {scheduling:.1f} s; they expire {ahead:.1f} s later", flush=True)
        if ahead < 2:
            failures.append(f"setup took too long: the holds were due {-ahead:.1f} s before the last was "
                            "scheduled (raise --lifetime)")

        if args.py_spy:  # from just before the holds come due to the end of the drain
            time.sleep(max((expires_at - utcnow()).total_seconds() - 2, 0))
            spy = c.PySpy(args.py_spy, worker.proc.pid, Path(instance) / "worker.pyspy.txt")
        stop_at = expires_at + timedelta(seconds=args.spread + 10 + args.grace)
        while utcnow() < stop_at:
            held, active = snapshot(app, ticket_type_id)
            min_held = held if min_held is None else min(min_held, held)
            mismatches += held != active
            if active == 0:
                break
            if not all(w.alive() for w in workers):
                failures.append("a worker died")
                break
            time.sleep(0.25)
    finally:
        if spy:
            profile = spy.stop()
        for w in workers:
            w.stop()  # warm shutdown: the job in flight finishes; then nothing moves
    results = job_results(app)

    with app.app_context():
        rows = db.session.execute(select(Hold.status, Hold.expires_at, Hold.ended_at)
                                  .where(Hold.ticket_type_id == ticket_type_id)).all()
        held_end, active_end = snapshot(app, ticket_type_id)

    ended = [r for r in rows if r.ended_at is not None]
    lateness = [(r.ended_at - r.expires_at).total_seconds() for r in ended]
    statuses = {}
    for r in rows:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    expired = statuses.get("expired", 0)
    early = sum(late < 0 for late in lateness)
    releases = results["released by jobs"] + results["released by sweeps"]
    log_counts = c.log_problems("".join(w.stderr_text() for w in workers))

    if expired != args.holds:
        failures.append(f"{expired} of {args.holds} holds expired by expiry + 10 s + {args.grace:.0f} s "
                        f"({statuses})")
    if early:
        failures.append(f"{early} holds released before they were due")
    if releases != expired:
        failures.append(f"jobs and sweeps report {releases} releases for {expired} expired holds "
                        "(a hold released twice, or not at all)")
    if held_end != 0 or active_end != 0:
        failures.append(f"held ends at {held_end} with {active_end} active holds")
    if min_held is not None and min_held < 0:
        failures.append(f"held went negative ({min_held})")
    if mismatches:
        failures.append(f"held != active holds in {mismatches} snapshots")
    if results["failed jobs"]:
        failures.append(f"{results['failed jobs']} failed jobs")
    for what, count in log_counts.items():
        if count:
            failures.append(f"{count} x {what!r} in the worker's log")

    late_max = max(lateness) if lateness else float("nan")
    drain = max((r.ended_at for r in ended), default=expires_at) - expires_at
    print()
    due = "at once" if not args.spread else f"over {args.spread:.0f} s"
    print(f"{args.db}: {args.holds} holds due {due}, lifetime {args.lifetime:.0f} s, "
          f"{args.workers} x python worker.py (RQ SimpleWorker + scheduler + sweep thread); "
          f"load avg {os.getloadavg()[0]:.1f}")
    print(c.table([[
        args.holds, expired, f"{c.percentile(lateness, 50):.1f}", f"{c.percentile(lateness, 99):.1f}",
        f"{late_max:.1f}", f"{drain.total_seconds():.1f}", f"{expired / max(drain.total_seconds(), 1e-9):.0f}",
        results["released by jobs"], results["released by sweeps"], results["sweeps run"],
        releases - expired, min_held, results["failed jobs"],
    ]], ["holds", "expired", "late p50 s", "late p99 s", "late max s", "drain s", "releases/s",
         "by jobs", "by sweeps", "sweeps", "released twice", "min held", "failed jobs"]))
    print(f"expiry jobs run: {results['expiry jobs run']} (one per second in which holds fell due)")
    within = sum(late <= 10 for late in lateness)
    print(f"released within lifetime + 10 s: {within}/{args.holds} -> goal "
          f"{'MET' if within == args.holds else 'MISSED'}")
    print(f"invariants: {'OK' if not failures else 'FAILED'}; log: "
          + ", ".join(f"{k} x{v}" for k, v in log_counts.items())
          + f"; left in Redis: {results['still scheduled']} scheduled, {results['still queued']} queued")
    for failure in failures:
        print(f"  FAILED: {failure}")
    print(f"logs (and SQLite files): {instance}")
    if profile:
        total, rows = c.summarise_profile(profile, within="BaseWorker.work (", children=False)
        print(f"\npy-spy, the worker's main thread from expiry to drained, {total} samples, "
              f"waits included ({profile}):")
        print(c.table(rows, ["share", "frame"]))
    return 1 if failures else 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child(args)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    return c.run_per_database(__file__, argv, dbs)


if __name__ == "__main__":
    sys.exit(main())
