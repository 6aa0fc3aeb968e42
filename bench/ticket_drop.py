"""Ticket drop: 200 signed-in buyers POST /checkout/hold for 1 of 50 seats at the
same moment, on gunicorn (gthread) serving the real app, on SQLite and PostgreSQL.

    .venv/bin/python bench/ticket_drop.py                 # both databases, 100 runs each
    .venv/bin/python bench/ticket_drop.py --db sqlite --runs 20 --workers 1 --threads 16

Each run: one burst of 200 POSTs to a trivial CSRF-exempt endpoint of the same stack
(bench/wsgi_bench.py, the floor) and one burst of 200 POST /checkout/hold as the event
page's buy form sends it with JavaScript (htmx: HX-Request, X-CSRFToken; a win is a 204
with HX-Redirect to checkout, a refusal a 409 fragment), in alternating order; then one
burst of 200 signed-in, CSRF-checked no-op POSTs (what any hold costs before its own
work) and one burst of the same form posted without JavaScript (a win is a 302 to
checkout, a refusal a full 409 page). Each hold burst has its own new ticket type of
50 seats. Invariants checked every run (exit 1 if any breaks): every answer a win or
a 409 (no 5xx, no timeouts), wins == held == sum of active holds == 50 (no oversell,
no seat left while buyers were turned away), sold + held <= capacity, one expiry job
scheduled per second in which holds fall due, and no "database is locked" /
Traceback in gunicorn's log.

Buyers are users made in the database, signed in the way Flask-Login leaves a browser:
a session cookie signed with the app's own session serializer holding _user_id, _fresh,
_id and Flask-WTF's raw CSRF token, whose signed form the POST carries. Each request
opens its own connection (Connection: close) and all of a burst's start together.

Figures: req/s = requests of a burst / its wall time (first send to last answer),
summed over the runs; holds/s = successful holds / the same time; latency per request;
server CPU ms/req = CPU of gunicorn's processes over the burst / requests; PostgreSQL
CPU ms/req = the same of every postgres process on the machine; machine busy = all
cores over the burst (other load included).
The goal compares the htmx hold's req/s with the floor's req/s (>= 0.50).

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


def hold_payloads(buyers, ticket_type_id, htmx=False):
    """What the event page's buy form sends: with JavaScript, htmx posts it (HX-Request,
    the CSRF token also in X-CSRFToken as base.html sets it); without, a plain form POST."""
    payloads = []
    for cookie, token in buyers:
        headers = {"HX-Request": "true", "HX-Target": f"hold-result-{ticket_type_id}",
                   "HX-Current-URL": "http://127.0.0.1/events/drop", "X-CSRFToken": token} if htmx else None
        payloads.append(c.build_post("/checkout/hold", f"ticket_type_id={ticket_type_id}&quantity=1&csrf_token={token}",
                                     cookie, headers))
    return payloads


# A seat taken: htmx is told where to go (204 + HX-Redirect), a plain form is redirected.
HTMX_WIN = (204, b"\r\nHX-Redirect: /checkout/")
PLAIN_WIN = (302, b"\r\nLocation: /checkout/")


def check_holds(app, results, ticket_type_id, win, args):
    """(seats won, problems) of one hold burst: every answer a win or a 409, wins ==
    held == active holds == seats, never oversold."""
    from sqlalchemy import text

    from app.extensions import db

    status, marker = win
    wins = sum(1 for s, _, body in results if s == status and marker in body)
    problems = []
    odd = sorted({s for s, _, body in results if s != 409 and not (s == status and marker in body)})
    if odd:
        sample = next(body for s, _, body in results if s in odd)
        problems.append(f"unexpected answers {odd}: " + sample[:300].decode(errors="replace"))
    with app.app_context():
        capacity, sold, held, active = db.session.execute(text(
            "SELECT capacity, sold, held, (SELECT coalesce(sum(quantity), 0) FROM holds "
            "WHERE ticket_type_id = :id AND status = 'active') FROM ticket_types WHERE id = :id"),
            {"id": ticket_type_id}).one()
        db.session.remove()
    if sold + held > capacity:
        problems.append(f"OVERSOLD: sold {sold} + held {held} > {capacity}")
    if not (wins == held == active):
        problems.append(f"wins {wins}, held {held}, active holds {active} differ")
    if held != min(capacity, args.buyers):
        problems.append(f"held {held}: seats left while buyers were turned away")
    return wins, problems


def expiry_jobs(app):
    """(distinct seconds in which holds fall due, expiry jobs scheduled)."""
    from sqlalchemy import select

    from app.extensions import db, redis
    from app.models import Hold

    with app.app_context():
        seconds = {math.ceil(at.timestamp()) for at in db.session.scalars(select(Hold.expires_at))}
        db.session.remove()
        scheduled = redis.queue().scheduled_job_registry.count
    return len(seconds), scheduled


def measured_burst(server, payloads):
    """burst() plus the CPU the server's processes used, PostgreSQL's, and how busy the machine was."""
    cpu, db_cpu, (busy, total) = c.cpu_seconds(server.proc.pid), c.cpu_seconds_named("postgres"), c.machine_cpu()
    results, wall = c.burst(server.port, payloads)
    busy2, total2 = c.machine_cpu()
    return results, wall, (c.cpu_seconds(server.proc.pid) - cpu, (busy2 - busy) / max(total2 - total, 1),
                           c.cpu_seconds_named("postgres") - db_cpu)


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
        rows = []  # per measured run: {burst name: (wall, latencies, (cpu, busy), wins)}
        started = time.monotonic()
        for run in range(args.runs + 1):  # run 0 warms both servers up and is not counted
            if run == 1 and args.py_spy:
                spy = c.PySpy(args.py_spy, web.proc.pid, log_dir / "web.pyspy.txt")
            htmx_type = new_ticket_type(app, event_id, args.seats, 2 * run)
            plain_type = new_ticket_type(app, event_id, args.seats, 2 * run + 1)
            htmx_payloads = hold_payloads(buyers, htmx_type, htmx=True)
            bursts = [("floor", floor, noop_payloads), ("hold", web, htmx_payloads)]
            if run % 2:
                bursts.reverse()
            bursts += [("signed", floor, signed_payloads), ("plain", web, hold_payloads(buyers, plain_type))]
            measured = {name: measured_burst(server, payloads) for name, server, payloads in bursts}

            problems = []
            wins = {}
            for name, ticket_type_id, win in (("hold", htmx_type, HTMX_WIN), ("plain", plain_type, PLAIN_WIN)):
                wins[name], found = check_holds(app, measured[name][0], ticket_type_id, win, args)
                problems += [f"{name}: {problem}" for problem in found]
            noop_statuses = {s for burst in ("floor", "signed") for s, _, _ in measured[burst][0]}
            if noop_statuses != {204}:
                problems.append(f"noop statuses {sorted(noop_statuses)}")
            due_seconds, scheduled = expiry_jobs(app)
            if scheduled != due_seconds:
                problems.append(f"{scheduled} expiry jobs scheduled for holds due in {due_seconds} seconds")
            if problems:
                failures.append((run, problems))
                print(f"run {run}: " + "; ".join(problems), flush=True)
            if run:
                rows.append({name: (wall, [lat for _, lat, _ in results], cpu, wins.get(name, 0))
                             for name, (results, wall, cpu) in measured.items()})
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


BURSTS = [  # (key, what the table calls it)
    ("hold", "POST /checkout/hold (htmx form)"),
    ("plain", "POST /checkout/hold (no JavaScript)"),
    ("floor", "POST /_bench/noop (floor)"),
    ("signed", "POST /_bench/signed-in-noop"),
]


def report(args, rows, failures, log_counts):
    n = args.buyers
    ms = lambda v: f"{v * 1000:.0f}"  # noqa: E731
    figures = {}
    table = []
    for key, label in BURSTS:
        walls = [row[key][0] for row in rows]
        latencies = [x for row in rows for x in row[key][1]]
        rps = n * len(rows) / sum(walls)
        figures[key] = rps
        holds_cell = f"{sum(row[key][3] for row in rows) / sum(walls):.0f}" if key in ("hold", "plain") else "-"
        cpu = sum(row[key][2][0] for row in rows) / (n * len(rows))
        db_cpu = sum(row[key][2][2] for row in rows) / (n * len(rows))
        busy = statistics.mean(row[key][2][1] for row in rows)
        table.append([label, f"{rps:.0f}", holds_cell, ms(statistics.median(walls)),
                      ms(c.percentile(latencies, 50)), ms(c.percentile(latencies, 99)), ms(max(latencies)),
                      f"{cpu * 1000:.2f}", f"{db_cpu * 1000:.2f}" if args.db == "postgres" else "-",
                      f"{100 * busy:.0f}%"])
    print()
    print(f"{args.db}: {len(rows)} runs x {n} buyers for {args.seats} seats; {args.app} on gunicorn gthread "
          f"{args.workers} workers x {args.threads} threads; load avg {os.getloadavg()[0]:.1f}")
    print(c.table(table, ["endpoint", "req/s", "holds/s", "rush ms (median)", "p50 ms", "p99 ms", "max ms",
                          "server CPU ms/req", "PostgreSQL CPU ms/req", "machine busy"]))
    floor = figures["floor"]
    holds_per_s = sum(row["hold"][3] for row in rows) / sum(row["hold"][0] for row in rows)
    print(f"ratio hold req/s / floor req/s = {figures['hold'] / floor:.2f}   (goal >= 0.50; the htmx form, "
          f"as a browser with JavaScript sends it)")
    print(f"ratio no-JavaScript hold / floor = {figures['plain'] / floor:.2f}   (a full page for every refusal)")
    print(f"ratio signed-in no-op / floor  = {figures['signed'] / floor:.2f}   (sign-in and CSRF alone, no work)")
    print(f"ratio holds/s / floor req/s    = {holds_per_s / floor:.2f}   "
          f"(at most {args.seats / n:.2f}: only {args.seats} of {n} requests can win)")
    print(f"invariants: {'OK' if not failures else f'{len(failures)} FAILED'} "
          f"(oversold 0, wins == held == active holds, no 5xx); log: "
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
