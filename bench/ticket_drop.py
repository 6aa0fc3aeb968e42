"""Ticket drop: 200 signed-in buyers POST /checkout/hold for 1 of 50 seats at the
same moment, on gunicorn (gthread) serving the real app, on SQLite and PostgreSQL.

    .venv/bin/python bench/ticket_drop.py                 # both databases, 100 runs each
    .venv/bin/python bench/ticket_drop.py --db sqlite --runs 20 --workers 1 --threads 16

Each run, on a new ticket type (capacity 50): one burst of 200 POSTs to a trivial
CSRF-exempt endpoint of the same stack (bench/wsgi_bench.py, the floor) and one
burst of 200 POST /checkout/hold, in alternating order, then one burst of 200
signed-in, CSRF-checked no-op POSTs (what any hold costs before its own work).
Invariants checked every run (exit 1 if any breaks): every answer is 302 or 409 (no
5xx, no timeouts), 302s == held == sum of active holds == 50 (no oversell, no seat
left while buyers were turned away), sold + held <= capacity, one expiry job
scheduled per second in which holds fall due, and no "database is locked" /
Traceback in gunicorn's log.

Buyers are users made in the database, signed in the way Flask-Login leaves a browser:
a session cookie signed with the app's own session serializer holding _user_id, _fresh,
_id and Flask-WTF's raw CSRF token, whose signed form the POST carries. Each request
opens its own connection (Connection: close) and all of a burst's start together.

Figures: req/s = requests of a burst / its wall time (first send to last answer),
summed over the runs; holds/s = successful holds / the same time; latency per request;
server CPU ms/req = CPU of gunicorn's processes over the burst / requests (PostgreSQL's
own CPU not included); machine busy = all cores over the burst (other load included).
The goal compares hold req/s with the floor's req/s (>= 0.50).

    --app MODULE:APP   serve the holds from another module (to try a change out)
    --py-spy PATH      profile the hold server's workers with py-spy, print where the time goes
"""
import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as c  # noqa: E402

BUYERS = 200
SEATS = 50


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2: one per core)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    p.add_argument("--buyers", type=int, default=BUYERS)
    p.add_argument("--seats", type=int, default=SEATS)
    p.add_argument("--app", default="wsgi:app",
                   help="WSGI app the holds go to (default wsgi:app; another module to try a change out)")
    p.add_argument("--py-spy", metavar="PATH", help="profile the hold server's workers with this py-spy binary")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def setup_data(app, buyers):
    """One active event (main room), and `buyers` users who signed up (personal account)."""
    from datetime import timedelta

    from app.accounts.services import create_organization, create_personal_account
    from app.extensions import db
    from app.models import Event, EventStatus, Room, RoomKind, User
    from app.models.base import new_id, utcnow

    with app.app_context():
        organiser = User(email="organiser@bench.example", name="Bench Organiser")
        db.session.add(organiser)
        db.session.flush()
        account = create_organization(organiser, "Bench Live")
        starts = utcnow() + timedelta(days=7)
        event = Event(account_id=account.id, slug="drop", name="The Drop", status=EventStatus.ACTIVE,
                      starts_at=starts, ends_at=starts + timedelta(hours=2))
        event.rooms = [Room(name="Main stage", kind=RoomKind.MAIN, is_main_room=True, position=0)]
        db.session.add(event)
        user_ids = []
        for i in range(buyers):
            user = User(id=new_id(), email=f"buyer{i}@bench.example", name=f"Buyer {i}")
            db.session.add(user)
            db.session.flush()
            user.current_account = create_personal_account(user)
            user_ids.append(user.id)
        db.session.commit()
        return event.id, user_ids


def new_ticket_type(app, event_id, seats, run):
    from app.extensions import db
    from app.models import Event, TicketType

    with app.app_context():
        event = db.session.get(Event, event_id)
        ticket_type = TicketType(event_id=event_id, name=f"Drop {run}", capacity=seats, max_per_order=10,
                                 position=run)
        ticket_type.rooms = [event.main_room]
        db.session.add(ticket_type)
        db.session.commit()
        return ticket_type.id


def counters(app, ticket_type_id):
    """(capacity, sold, held, sum of active holds, distinct expiry seconds of all holds,
    scheduled expiry jobs)."""
    from sqlalchemy import select, text

    from app.extensions import db, redis
    from app.models import Hold

    with app.app_context():
        row = db.session.execute(text(
            "SELECT capacity, sold, held, (SELECT coalesce(sum(quantity), 0) FROM holds "
            "WHERE ticket_type_id = :id AND status = 'active') FROM ticket_types WHERE id = :id"),
            {"id": ticket_type_id}).one()
        seconds = {math.ceil(at.timestamp()) for at in db.session.scalars(select(Hold.expires_at))}
        db.session.remove()
        scheduled = redis.queue().scheduled_job_registry.count
    return (*row, len(seconds), scheduled)


def measured_burst(server, payloads):
    """burst() plus the CPU the server's processes used and how busy the machine was."""
    cpu, (busy, total) = c.cpu_seconds(server.proc.pid), c.machine_cpu()
    results, wall = c.burst(server.port, payloads)
    busy2, total2 = c.machine_cpu()
    return results, wall, (c.cpu_seconds(server.proc.pid) - cpu, (busy2 - busy) / max(total2 - total, 1))


def child(args):
    instance = c.make_instance_dir(args.db)
    env = c.bench_env(args.db, instance)
    c.use_env(env)
    c.reset_databases(args.db, env)

    from app import create_app

    c.quiet_logs()
    app = create_app()
    event_id, user_ids = setup_data(app, args.buyers)
    signer = c.Signer(app)
    buyers = [signer.buyer(uid) for uid in user_ids]

    log_dir = Path(instance)
    web = floor = spy = profile = None
    failures = []
    try:
        web = c.start_gunicorn("web", args.app, env, log_dir, args.workers, args.threads)
        floor = c.start_gunicorn("floor", "bench.wsgi_bench:app", env, log_dir, args.workers, args.threads)
        noop_payloads = [c.build_post("/_bench/noop", f"csrf_token={token}", cookie) for cookie, token in buyers]
        signed_payloads = [c.build_post("/_bench/signed-in-noop", f"csrf_token={token}", cookie)
                           for cookie, token in buyers]
        rows = []  # per measured run: (hold wall, holds, noop wall, hold latencies, noop latencies)
        total_holds = 0
        started = time.monotonic()
        for run in range(args.runs + 1):  # run 0 warms both servers up and is not counted
            if run == 1 and args.py_spy:
                spy = c.PySpy(args.py_spy, web.proc.pid, log_dir / "web.pyspy.txt")
            ticket_type_id = new_ticket_type(app, event_id, args.seats, run)
            hold_payloads = [c.build_post("/checkout/hold",
                                          f"ticket_type_id={ticket_type_id}&quantity=1&csrf_token={token}", cookie)
                             for cookie, token in buyers]
            if run % 2:
                hold_results, hold_wall, hold_cpu = measured_burst(web, hold_payloads)
                noop_results, noop_wall, noop_cpu = measured_burst(floor, noop_payloads)
            else:
                noop_results, noop_wall, noop_cpu = measured_burst(floor, noop_payloads)
                hold_results, hold_wall, hold_cpu = measured_burst(web, hold_payloads)
            signed_results, signed_wall, signed_cpu = measured_burst(floor, signed_payloads)

            statuses = [s for s, _, _ in hold_results]
            wins = statuses.count(302)
            total_holds += wins
            capacity, sold, held, active, due_seconds, scheduled = counters(app, ticket_type_id)
            problems = []
            if any(s not in (302, 409) for s in statuses):
                odd = sorted({s for s in statuses if s not in (302, 409)})
                problems.append(f"unexpected statuses {odd}: "
                                + next(b for s, _, b in hold_results if s in odd)[:300].decode(errors="replace"))
            if any(s != 204 for s, _, _ in noop_results + signed_results):
                problems.append(f"noop statuses {sorted({s for s, _, _ in noop_results + signed_results})}")
            if sold + held > capacity:
                problems.append(f"OVERSOLD: sold {sold} + held {held} > {capacity}")
            if not (wins == held == active):
                problems.append(f"302s {wins}, held {held}, active holds {active} differ")
            if held != min(capacity, args.buyers):
                problems.append(f"held {held}: seats left while buyers were turned away")
            if scheduled != due_seconds:
                problems.append(f"{scheduled} expiry jobs scheduled for holds due in {due_seconds} seconds")
            if problems:
                failures.append((run, problems))
                print(f"run {run}: " + "; ".join(problems), flush=True)
            if run:
                rows.append((hold_wall, wins, noop_wall, [lat for _, lat, _ in hold_results],
                             [lat for _, lat, _ in noop_results], hold_cpu, noop_cpu,
                             signed_wall, [lat for _, lat, _ in signed_results], signed_cpu))
            if run and run % 10 == 0:
                print(f"  {run}/{args.runs} runs, {time.monotonic() - started:.0f} s", flush=True)
    finally:
        if spy:
            profile = spy.stop()
        for server in (web, floor):
            if server:
                server.stop()

    web_log = web.stderr_text() if web else ""
    log_counts = c.log_problems(web_log)
    for what, count in log_counts.items():
        if count:
            failures.append(("log", [f"{count} x {what!r} in gunicorn's stderr"]))
    report(args, rows, failures, log_counts)
    print(f"logs (and SQLite files): {instance}")
    if profile:
        total, top = c.summarise_profile(profile, within="Flask.wsgi_app (", top=40)
        print(f"\npy-spy, request threads of the hold server (runs 1-{args.runs}; the noop bursts go to the "
              f"other server), {total} samples, waits included ({profile}):")
        print(c.table(top, ["share", "frame"]))
    return 1 if failures else 0


def report(args, rows, failures, log_counts):
    hold_walls = [r[0] for r in rows]
    noop_walls = [r[2] for r in rows]
    holds = sum(r[1] for r in rows)
    hold_lat = [x for r in rows for x in r[3]]
    noop_lat = [x for r in rows for x in r[4]]
    n = args.buyers
    holds_per_s = holds / sum(hold_walls)
    hold_rps = n * len(rows) / sum(hold_walls)
    floor_rps = n * len(rows) / sum(noop_walls)
    signed_walls = [r[7] for r in rows]
    signed_lat = [x for r in rows for x in r[8]]
    signed_rps = n * len(rows) / sum(signed_walls)
    signed_cpu = sum(r[9][0] for r in rows) / (n * len(rows))
    signed_busy = statistics.mean(r[9][1] for r in rows)
    ms = lambda v: f"{v * 1000:.0f}"  # noqa: E731
    hold_cpu = sum(r[5][0] for r in rows) / (n * len(rows))
    noop_cpu = sum(r[6][0] for r in rows) / (n * len(rows))
    hold_busy = statistics.mean(r[5][1] for r in rows)
    noop_busy = statistics.mean(r[6][1] for r in rows)
    print()
    print(f"{args.db}: {len(rows)} runs x {n} buyers for {args.seats} seats; {args.app} on gunicorn gthread "
          f"{args.workers} workers x {args.threads} threads; load avg {os.getloadavg()[0]:.1f}")
    print(c.table([
        ["POST /checkout/hold", f"{hold_rps:.0f}", f"{holds_per_s:.0f}", ms(statistics.median(hold_walls)),
         ms(c.percentile(hold_lat, 50)), ms(c.percentile(hold_lat, 99)), ms(max(hold_lat)),
         f"{hold_cpu * 1000:.2f}", f"{100 * hold_busy:.0f}%"],
        ["POST /_bench/noop (floor)", f"{floor_rps:.0f}", "-", ms(statistics.median(noop_walls)),
         ms(c.percentile(noop_lat, 50)), ms(c.percentile(noop_lat, 99)), ms(max(noop_lat)),
         f"{noop_cpu * 1000:.2f}", f"{100 * noop_busy:.0f}%"],
        ["POST /_bench/signed-in-noop", f"{signed_rps:.0f}", "-", ms(statistics.median(signed_walls)),
         ms(c.percentile(signed_lat, 50)), ms(c.percentile(signed_lat, 99)), ms(max(signed_lat)),
         f"{signed_cpu * 1000:.2f}", f"{100 * signed_busy:.0f}%"],
    ], ["endpoint", "req/s", "holds/s", "rush ms (median)", "p50 ms", "p99 ms", "max ms",
        "server CPU ms/req", "machine busy"]))
    print(f"ratio hold req/s / floor req/s = {hold_rps / floor_rps:.2f}   (goal >= 0.50)")
    print(f"ratio signed-in no-op / floor  = {signed_rps / floor_rps:.2f}   (sign-in and CSRF alone, no work)")
    print(f"ratio hold req/s / signed-in no-op req/s = {hold_rps / signed_rps:.2f}")
    print(f"ratio holds/s / floor req/s    = {holds_per_s / floor_rps:.2f}   "
          f"(at most {args.seats / n:.2f}: only {args.seats} of {n} requests can win)")
    print(f"invariants: {'OK' if not failures else f'{len(failures)} FAILED'} "
          f"(oversold 0, 302s == held == active holds, no 5xx); log: "
          + ", ".join(f"{k} x{v}" for k, v in log_counts.items()))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child(args)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    return c.run_per_database(__file__, argv, dbs)  # the child's own --db comes last and wins


if __name__ == "__main__":
    sys.exit(main())
