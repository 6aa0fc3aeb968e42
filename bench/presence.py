"""Presence: 1,000 websocket clients in one room across two web processes; a change
in the room reaches all of them; a reconnect storm settles with presence correct.

    .venv/bin/python bench/presence.py                          # gthread, SQLite
    .venv/bin/python bench/presence.py --worker-class gevent
    .venv/bin/python bench/presence.py --db postgres
    .venv/bin/python bench/presence.py --clients 50 --changes 3 --storm 2        # quick check

Two gunicorn masters of one worker each (the "two web processes"), on two ports,
serve the real app (gunicorn.conf.py, WEB_WORKER_CLASS from --worker-class) against
one database and one real Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/10,
flushed first). One separate asyncio process (aiohttp) opens `--clients` sockets,
GET /rooms/<id>/socket, half on each process, each as a different user holding the
viewer role (room.join), signed in the way Flask-Login leaves a browser
(bench/_common.py Signer), with the host's Origin. Presence so lists `--clients` people.

Phases, each timed:
1. connect: all sockets at once; every handshake must answer 101 and the socket stay
   open. Then presence must settle: Redis lists exactly one connection and one person
   per client, and every client's last presence fragment counts them all (it names
   the first 100).
2. fan-out: `--changes` changes, one every `--gap` s. Each is one publish on the
   room's Redis channel; each process's hub renders the fragment once and sends it
   to its sockets. Latency = publish to the client reading a fragment carrying the
   change's marker (same clock: the bench process does both). The change is a host
   bringing someone on stage (`--change stage`, the default: stage.approve, commit,
   announce; every socket gets the new stage list), or a chat message published the
   way services.announce_message does (`--change chat`). Another change is a class
   with marker(n) (what its fragment carries, known before it fires) and fire(n),
   registered in CHANGES.
3. memory: RSS of each worker before the sockets open (after a warm-up socket and
   change) and after, divided by the sockets it holds.
4. storm: every client's TCP connection is aborted (no close frame, as a network
   drop or a proxy restart), and each reconnects at a moment spread evenly over
   `--storm` s. Every answer must be 101 (any 5xx fails), then presence must settle
   to exactly `--clients` connections and people, the room page (GET /rooms/<id>,
   from each process) must list them all, and 5 more changes must reach every client.

Exit 1 if an invariant breaks: a handshake not 101, a socket closed by the server
after its 101, a change not received by every open client within 30 s, presence
wrong after settling, a Traceback or a 5xx in gunicorn's logs (a socket handler that
fails after the upgrade has already answered 101). The p99 < 250 ms goal is printed
as met or not. --slow-reader runs another check instead: one socket that stops
reading must not hold up the others. --redis-max-connections overrides the web
processes' Redis pool cap (REDIS_MAX_CONNECTIONS; see bench/README.md).
"""
import argparse
import asyncio
import os
import re
import resource
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
# A database of its own: other benchmarks drop and recreate theirs.
os.environ.setdefault("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/eventuall_bench_presence")

from bench import _common as c  # noqa: E402

GOAL_P99 = 0.250


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--processes", type=int, default=2, help="web processes (gunicorn masters of 1 worker)")
    p.add_argument("--worker-class", default="gthread", choices=["gthread", "gevent"])
    p.add_argument("--threads", type=int,
                   help="gthread pool per worker (default: its share of the sockets + 64: a socket holds "
                        "a thread for its life)")
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--gap", type=float, default=0.5, help="seconds between changes")
    p.add_argument("--change", default="stage", choices=sorted(CHANGES), help="what changes in the room")
    p.add_argument("--storm", type=float, default=10.0, help="seconds the reconnects are spread over")
    p.add_argument("--settle-timeout", type=float, default=30.0)
    p.add_argument("--redis-max-connections", type=int,
                   help="give the web processes' Redis pool this cap (?max_connections= on REDIS_URL); "
                        "default: as deployed (REDIS_MAX_CONNECTIONS)")
    p.add_argument("--slow-reader", action="store_true",
                   help="instead: 11 sockets on one process, one stops reading; 200 fragments of 100 KB "
                        "must still reach the 10 others (the hub's send timeout)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data

def setup_data(app, clients):
    """An active event with a main room; its organiser (the host) and `clients` viewers."""
    from datetime import timedelta

    from sqlalchemy import insert

    from app.accounts.services import create_organization
    from app.extensions import db
    from app.models import AccessGrant, Event, EventStatus, Room, RoomKind, User
    from app.models.access import GrantSource
    from app.models.base import new_id, utcnow

    with app.app_context():
        host = User(email="host@bench.example", name="Bench Host")
        db.session.add(host)
        db.session.flush()
        account = create_organization(host, "Bench Live")
        starts = utcnow() - timedelta(minutes=5)
        event = Event(account_id=account.id, slug="live", name="The Live One", status=EventStatus.ACTIVE,
                      starts_at=starts, ends_at=starts + timedelta(hours=3))
        event.rooms = [Room(name="Main stage", kind=RoomKind.MAIN, is_main_room=True, position=0)]
        db.session.add(event)
        db.session.flush()
        user_ids = [new_id() for _ in range(clients)]
        db.session.execute(insert(User), [{"id": uid, "email": f"viewer{i}@bench.example",
                                           "name": f"Viewer {i:04d}"} for i, uid in enumerate(user_ids)])
        db.session.execute(insert(AccessGrant), [{"event_id": event.id, "user_id": uid, "role_id": "viewer",
                                                  "source": GrantSource.MANUAL} for uid in user_ids])
        db.session.commit()
        return event.rooms[0].id, host.id, user_ids


# --------------------------------------------------------------------------- changes

class ChatChange:
    """A chat message announced as services.announce_message does (no database row:
    the hub renders from the published payload). Marker: the message's element id."""

    name = "chat"

    def __init__(self, app, room_id, host_id):
        self.app, self.room_id, self.host_id = app, room_id, host_id
        self.run = uuid.uuid4().hex[:8]

    def marker(self, n):
        """What the fragment of change n carries (known before it is fired)."""
        return f'id="msg-bench{n:04d}-{self.run}"'

    def fire(self, n):
        from app.models.base import utcnow
        from app.rooms import services

        with self.app.app_context():
            services.publish(self.room_id, "chat", message={
                "id": f"bench{n:04d}-{self.run}", "user_id": self.host_id, "author_label": "Bench Host",
                "body": f"change {n}", "created_at": utcnow().isoformat()})


class StageChange:
    """A host brings performer n on stage, as the approve route does (stage.approve, the
    commit, stage.after_enter: the announce every process fans out, each socket getting
    the new stage list). Performers wait in the queue, already vetted, from the start.
    Marker: the performer's name in the stage list."""

    name = "stage"
    PERFORMERS = 50  # the most stage places a room has; a run makes fewer changes

    def __init__(self, app, room_id, host_id):
        from app.extensions import db
        from app.models import Room, User
        from app.models.live import StageEntryStatus, StageQueueEntry

        self.app, self.room_id, self.host_id = app, room_id, host_id
        self.run = uuid.uuid4().hex[:6]
        self.entries = []
        self.performer_of = {}  # change number -> performer, in the order the changes come
        with app.app_context():
            room = db.session.get(Room, room_id)
            room.stage_slots = self.PERFORMERS
            for n in range(self.PERFORMERS):
                user = User(email=f"performer{n}-{self.run}@bench.example", name=self._label(n))
                db.session.add(user)
                db.session.flush()
                entry = StageQueueEntry(room_id=room_id, event_id=room.event_id, user_id=user.id,
                                        user_label=user.name, status=StageEntryStatus.VETTING,
                                        vetted_by_id=host_id)
                db.session.add(entry)
                db.session.flush()
                self.entries.append(entry.id)
            db.session.commit()

    def _label(self, n):
        return f"Performer {n} {self.run}"

    def _performer(self, n):
        return self.performer_of.setdefault(n, len(self.performer_of))

    def marker(self, n):
        return self._label(self._performer(n))

    def fire(self, n):
        from app.extensions import db
        from app.models import Room, User
        from app.rooms import stage

        with self.app.app_context():
            room, host = db.session.get(Room, self.room_id), db.session.get(User, self.host_id)
            performer = self._performer(n)
            if performer >= len(self.entries):
                raise RuntimeError(f"--change stage has {len(self.entries)} performers: fewer changes, please")
            appearance = stage.approve(room, host, stage.entry_in(room, self.entries[performer]))
            db.session.commit()
            stage.after_enter(room, appearance)
            db.session.remove()


CHANGES = {ChatChange.name: ChatChange, StageChange.name: StageChange}


# --------------------------------------------------------------------------- clients

class Watch:
    """Markers being waited for, and when each client saw each."""

    def __init__(self):
        self.pending = {}  # marker -> {client index: perf_counter when read}

    def expect(self, marker):
        self.pending[marker] = {}

    def seen(self, text, index, at):
        for marker, got in self.pending.items():
            if marker in text and index not in got:
                got[index] = at


class Client:
    def __init__(self, index, port, cookie, room_id, watch):
        self.index, self.port, self.cookie, self.watch = index, port, cookie, watch
        self.url = f"http://127.0.0.1:{port}/rooms/{room_id}/socket"
        self.ws = None
        self.reader = None
        self.presence_count = None  # people named in the last presence fragment read

    async def connect(self, session):
        """Open the socket. Returns (status, handshake seconds); status 101 or the error."""
        import aiohttp

        t0 = time.perf_counter()
        try:
            self.ws = await session.ws_connect(
                self.url, headers={"Cookie": self.cookie, "Origin": f"http://127.0.0.1:{self.port}",
                                   "User-Agent": c.USER_AGENT},
                autoping=True, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=5),
                receive_timeout=None)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, time.perf_counter() - t0
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            return -1, time.perf_counter() - t0
        self.reader = asyncio.ensure_future(self._read(self.ws))
        return 101, time.perf_counter() - t0

    async def _read(self, ws):
        import aiohttp

        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            at = time.perf_counter()
            text = msg.data
            if 'id="presence"' in text:
                self.presence_count = present_in(text)
            if self.watch.pending:
                self.watch.seen(text, self.index, at)

    def is_open(self):
        return self.ws is not None and not self.ws.closed

    def drop(self):
        """Abort the TCP connection: no close frame, as a network drop."""
        conn = getattr(self.ws, "_conn", None)
        transport = getattr(conn, "transport", None)
        if transport is not None:
            transport.abort()

    async def close(self):
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


# --------------------------------------------------------------------------- server side

def worker_pid(master):
    children = Path(f"/proc/{master.proc.pid}/task/{master.proc.pid}/children").read_text().split()
    return int(children[0])


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def threads_of(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def presence_state(app, room_id):
    """(connections listed in Redis, distinct people)."""
    from app.extensions import redis
    from app.rooms import services

    with app.app_context():
        people = services.list_presence(room_id)
        return redis.zcard(f"presence:{room_id}"), len(people)


async def settle(app, room_id, clients, expected, timeout):
    """Seconds until Redis lists `expected` connections and people and every client's
    last presence fragment names them all (None if not within timeout)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        conns, people = await asyncio.to_thread(presence_state, app, room_id)
        if conns == expected and people == expected and all(cl.presence_count == expected for cl in clients):
            return time.perf_counter() - t0
        await asyncio.sleep(0.1)
    return None


async def fan_out(change, watch, clients, count, gap, first=0, wait=30):
    """Fire `count` changes; per change, wait for every client (`wait` s at most: a
    late receipt is a latency, a missing one a failure).
    Returns (latencies, changes not received by every client)."""
    latencies, missed = [], 0
    spread = []  # per change: (first, last receipt) after the publish
    for n in range(first, first + count):
        marker = change.marker(n)
        watch.expect(marker)
        got = watch.pending[marker]
        t0 = time.perf_counter()
        await asyncio.to_thread(change.fire, n)
        deadline = t0 + wait
        # Wait for the clients whose socket is open; one the server closed cannot receive it.
        while time.perf_counter() < deadline and not all(cl.index in got for cl in clients if cl.is_open()):
            await asyncio.sleep(0.005)
        latencies += [at - t0 for at in got.values()]
        if got:
            spread.append((min(got.values()) - t0, max(got.values()) - t0))
        if len(got) < len(clients):
            missed += 1
            print(f"  change {n}: {len(clients) - len(got)} clients did not receive it in {wait} s", flush=True)
        del watch.pending[marker]
        await asyncio.sleep(gap)
    if count > 1:
        print("  per change, first-last receipt ms: " + " ".join(f"{a * 1000:.0f}-{b * 1000:.0f}" for a, b in spread),
              flush=True)
    return latencies, missed


def present_in(html):
    """How many people a presence list says are here (it names the first 100, counts all)."""
    found = re.search(r'id="presence"[^>]*data-count="(\d+)"', html)
    return int(found.group(1)) if found else None


async def room_pages(session, servers, room_id, cookie):
    """GET /rooms/<id> as a viewer from each process: (status, people its presence list counts)."""
    out = []
    for server in servers:
        async with session.get(f"http://127.0.0.1:{server.port}/rooms/{room_id}",
                               headers={"Cookie": cookie, "User-Agent": c.USER_AGENT}) as response:
            html = await response.text()
            out.append((response.status, present_in(html)))
    return out


async def run_clients(args, app, room_id, host_id, cookies, servers):
    import aiohttp

    watch = Watch()
    ports = [s.port for s in servers]
    clients = [Client(i, ports[i % len(ports)], cookie, room_id, watch) for i, cookie in enumerate(cookies)]
    change = CHANGES[args.change](app, room_id, host_id)
    figures, failures = {}, []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        # Warm-up: one socket per process starts its hub; one change compiles its templates.
        warm = [Client(-1 - k, port, cookies[k], room_id, watch) for k, port in enumerate(ports)]
        for w in warm:
            status, _ = await w.connect(session)
            if status != 101:
                raise RuntimeError(f"warm-up socket answered {status}")
        await asyncio.sleep(1.0)
        await fan_out(change, watch, warm, 1, 0.5, first=9999)
        for w in warm:
            await w.close()
        await asyncio.sleep(1.0)
        pids = [worker_pid(s) for s in servers]
        figures["rss_before"] = [rss_kib(p) for p in pids]

        # 1. connect all
        t0 = time.perf_counter()
        results = await asyncio.gather(*(cl.connect(session) for cl in clients))
        figures["connect_wall"] = time.perf_counter() - t0
        figures["handshakes"] = [t for _, t in results]
        bad = [s for s, _ in results if s != 101]
        figures["connect_bad"] = bad
        if bad:
            failures.append(f"connect: {len(bad)} handshakes not 101: {sorted(set(bad))}")
        figures["connect_settle"] = await settle(app, room_id, clients, len(clients), args.settle_timeout)
        if figures["connect_settle"] is None:
            failures.append(f"connect: presence did not settle to {len(clients)} in {args.settle_timeout} s "
                            f"(Redis {presence_state(app, room_id)})")
        lost = sum(1 for cl in clients if not cl.is_open())
        if lost:
            failures.append(f"connect: {lost} sockets closed by the server after their 101")
        await asyncio.sleep(1.0)
        figures["rss_after"] = [rss_kib(p) for p in pids]
        figures["threads_after"] = [threads_of(p) for p in pids]

        # 2. fan-out
        latencies, missed = await fan_out(change, watch, clients, args.changes, args.gap)
        figures["fanout"] = latencies
        if missed:
            failures.append(f"fan-out: {missed} of {args.changes} changes missed some clients")

        # 3. storm: drop all, reconnect spread over args.storm seconds
        for cl in clients:
            cl.drop()
            cl.presence_count = None
        step = args.storm / len(clients)
        t0 = time.perf_counter()

        async def back(cl):
            await asyncio.sleep(cl.index * step)
            return await cl.connect(session)

        results = await asyncio.gather(*(back(cl) for cl in clients))
        figures["storm_wall"] = time.perf_counter() - t0
        figures["storm_handshakes"] = [t for _, t in results]
        bad = [s for s, _ in results if s != 101]
        figures["storm_bad"] = bad
        if bad:
            failures.append(f"storm: {len(bad)} handshakes not 101: {sorted(set(bad))}"
                            + (" (5xx!)" if any(500 <= s < 600 for s in bad) else ""))
        settled = await settle(app, room_id, clients, len(clients), args.settle_timeout)
        figures["storm_settle"] = None if settled is None else figures["storm_wall"] + settled
        figures["storm_presence"] = presence_state(app, room_id)
        lost = sum(1 for cl in clients if not cl.is_open())
        if lost:
            failures.append(f"storm: {lost} sockets closed by the server after their 101")
        if settled is None:
            failures.append(f"storm: presence did not settle to {len(clients)} "
                            f"(Redis connections, people = {figures['storm_presence']}; clients' last lists "
                            f"{sorted({cl.presence_count for cl in clients}, key=str)[:5]})")
        figures["pages"] = await room_pages(session, servers, room_id, cookies[0])
        for port, (status, listed) in zip(ports, figures["pages"]):
            if status != 200 or listed != len(clients):
                failures.append(f"room page on :{port}: {status}, lists {listed} people, not {len(clients)}")
        figures["threads_storm"] = [threads_of(p) for p in pids]
        figures["rss_storm"] = [rss_kib(p) for p in pids]
        latencies, missed = await fan_out(change, watch, clients, 5, args.gap, first=args.changes)
        figures["fanout_storm"] = latencies
        if missed:
            failures.append(f"after the storm: {missed} of 5 changes missed some clients")
        await asyncio.gather(*(cl.close() for cl in clients))
    return figures, failures


async def slow_reader(app, room_id, host_id, cookies, server, readers=10, size=100_000, count=200):
    """One socket stops reading (its TCP window closes) while `count` fragments of `size`
    bytes go to it and `readers` others on the same process. Returns the slowest
    delivery to the readers (seconds) and whether every fragment reached them all."""
    import aiohttp

    from app.models.base import utcnow
    from app.rooms import services

    watch = Watch()
    clients = [Client(i, server.port, cookie, room_id, watch) for i, cookie in enumerate(cookies[:readers + 1])]
    slowest, complete = 0.0, True
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        for cl in clients:
            if (await cl.connect(session))[0] != 101:
                raise RuntimeError("slow-reader socket refused")
        await asyncio.sleep(1.0)
        stalled, readers = clients[0], clients[1:]
        stalled.ws._conn.transport.pause_reading()
        body = "x" * size
        for n in range(count):
            marker = f'id="msg-slow{n}"'
            watch.expect(marker)
            got = watch.pending[marker]
            t0 = time.perf_counter()
            with app.app_context():
                services.publish(room_id, "chat", message={"id": f"slow{n}", "user_id": host_id,
                                                            "author_label": "Bench Host", "body": body,
                                                            "created_at": utcnow().isoformat()})
            while len(got) < len(readers) and time.perf_counter() - t0 < 10:
                await asyncio.sleep(0.005)
            del watch.pending[marker]
            if len(got) < len(readers):
                complete = False
                print(f"  slow reader: fragment {n} ({n * size // 1000} KB sent to the stalled socket) reached "
                      f"{len(got)} of {len(readers)} readers in 10 s", flush=True)
                break
            slowest = max(slowest, max(got.values()) - t0)
        for cl in clients:
            await cl.close()
    return slowest, complete


# --------------------------------------------------------------------------- run

def child(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * args.clients + 1024
    if soft < want:  # the servers inherit it
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    instance = c.make_instance_dir(args.db)
    env = c.bench_env(args.db, instance)
    env["WEB_WORKER_CLASS"] = args.worker_class
    env["WEB_WORKER_CONNECTIONS"] = str(args.clients + 100)
    web_env = dict(env)
    if args.redis_max_connections:
        web_env["REDIS_URL"] = f"{env['REDIS_URL']}?max_connections={args.redis_max_connections}"
    c.use_env(env)
    c.reset_databases(args.db, env)

    from app import create_app

    c.quiet_logs()
    app = create_app()
    room_id, host_id, user_ids = setup_data(app, args.clients)
    signer = c.Signer(app)
    cookies = [signer.buyer(uid)[0] for uid in user_ids]
    per_process = -(-args.clients // args.processes)
    threads = args.threads or per_process + 64

    log_dir = Path(instance)
    servers = []
    failures = []
    try:
        for k in range(args.processes):
            servers.append(c.start_gunicorn(f"web{k}", "wsgi:app", web_env, log_dir, 1, threads))
        if args.slow_reader:
            slowest, complete = asyncio.run(slow_reader(app, room_id, host_id, cookies, servers[0]))
            print(f"slow reader: {'every fragment reached the 10 readers' if complete else 'fan-out STALLED'}; "
                  f"slowest delivery {slowest * 1000:.0f} ms (20 MB sent, 100 KB at a time)")
            return 0 if complete else 1
        figures, failures = asyncio.run(run_clients(args, app, room_id, host_id, cookies, servers))
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        for what, count in c.log_problems(server.stderr_text()).items():
            if count:
                failures.append(f"{server.name}: {count} x {what!r} in gunicorn's stderr")
        errors = len(re.findall(r'" 5\d\d ', server.out_path.read_text(errors="replace")))
        if errors:
            failures.append(f"{server.name}: {errors} responses 5xx in the access log")
    report(args, threads, figures, failures)
    print(f"logs: {instance}")
    return 1 if failures else 0


def report(args, threads, f, failures):
    ms = lambda v: f"{v * 1000:.0f}" if v == v else "-"  # noqa: E731
    n, procs = args.clients, args.processes
    pool = f"{threads} threads" if args.worker_class == "gthread" else f"{n + 100} connections"
    print()
    print(f"{args.db}: {n} clients in one room, {procs} web processes (gunicorn {args.worker_class}, 1 worker, "
          f"{pool} each; Redis pool cap {args.redis_max_connections or 'as deployed'}); "
          f"change: {args.change}; load avg {os.getloadavg()[0]:.1f} (shared machine: noisy)")
    hs, shs = f["handshakes"], f["storm_handshakes"]
    print(c.table([
        ["connect all at once", f"{f['connect_wall']:.2f}", ms(c.percentile(hs, 50)), ms(c.percentile(hs, 99)),
         ms(max(hs)), len(f["connect_bad"]),
         "-" if f["connect_settle"] is None else f"{f['connect_settle']:.2f}"],
        [f"storm: drop all, reconnect over {args.storm:g} s", f"{f['storm_wall']:.2f}", ms(c.percentile(shs, 50)),
         ms(c.percentile(shs, 99)), ms(max(shs)), len(f["storm_bad"]),
         "-" if f["storm_settle"] is None else f"{f['storm_settle']:.2f}"],
    ], ["phase", "wall s", "handshake p50 ms", "p99 ms", "max ms", "not 101", "presence settled s"]))
    print()
    rows = []
    for name, lat, count in (("fan-out", f["fanout"], args.changes), ("fan-out after the storm",
                                                                     f["fanout_storm"], 5)):
        rows.append([f"{name} ({count} changes x {n} clients)", ms(c.percentile(lat, 50)),
                     ms(c.percentile(lat, 95)), ms(c.percentile(lat, 99)), ms(max(lat) if lat else float("nan")),
                     len(lat)])
    print(c.table(rows, ["publish -> client", "p50 ms", "p95 ms", "p99 ms", "max ms", "receipts"]))
    p99 = c.percentile(f["fanout"], 99)
    print(f"goal p99 < {GOAL_P99 * 1000:.0f} ms: {'met' if p99 < GOAL_P99 else 'NOT met'} ({ms(p99)} ms)")
    print()
    rows = []
    for k in range(procs):
        share = len(range(k, n, procs))
        before, after = f["rss_before"][k], f["rss_after"][k]
        rows.append([f"web{k}", share, f"{before / 1024:.1f}", f"{after / 1024:.1f}",
                     f"{(after - before) / share:.1f}", f["threads_after"][k], f"{f['rss_storm'][k] / 1024:.1f}",
                     f["threads_storm"][k]])
    print(c.table(rows, ["process", "sockets", "RSS before MiB", "RSS after MiB", "KiB per socket",
                         "threads", "RSS after storm MiB", "threads after storm"]))
    total = sum(f["rss_after"][k] - f["rss_before"][k] for k in range(procs))
    print(f"memory per connection: {total / n:.1f} KiB (RSS growth of the web processes / sockets)")
    print(f"presence after the storm (Redis connections, people): {f['storm_presence']}; room page from each "
          f"process (status, people listed): {f['pages']}")
    print(f"invariants: {'OK' if not failures else f'{len(failures)} FAILED'} "
          "(every handshake 101, every change reached every client, presence exact, no 5xx, no Traceback)")
    for failure in failures:
        print(f"  FAILED: {failure}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child(args)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    return c.run_per_database(__file__, argv, dbs)


if __name__ == "__main__":
    sys.exit(main())
