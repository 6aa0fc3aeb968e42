"""Shared helpers for the benchmarks: fresh databases, servers we start and stop
ourselves, a small asyncio HTTP/1.1 client, signed-in cookies, percentiles.

Everything runs on 127.0.0.1. Each benchmark runs one database per child
process (config.py reads the environment at import), so `--db both` re-runs
the script once per database.
"""
import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/eventuall_bench_j")
PG_DBNAME = PG_URL.rsplit("/", 1)[1]
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
SECRET_KEY = "bench-secret-key-0123456789abcdef0123456789abcdef"
USER_AGENT = "eventuall-bench/1.0"


# --------------------------------------------------------------------------- environment

def bench_env(db, instance_path):
    """The environment web, worker and the bench process share for one database."""
    env = dict(os.environ)
    for key in ("DATABASE_URL", "LIVE_DATABASE_URL", "WORKER_IN_WEB", "HOLD_MINUTES",
                "WEB_CONCURRENCY", "WEB_THREADS", "PORT", "EVENTUALL_ENV"):
        env.pop(key, None)
    env.update({
        "INSTANCE_PATH": str(instance_path),
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": SECRET_KEY,
        "FLASK_APP": "app",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
    })
    if db == "postgres":
        env["DATABASE_URL"] = PG_URL
    return env


def reset_databases(db, env):
    """Fresh schema through the migrations (`flask db upgrade`) and an empty Redis db."""
    import redis as redis_py

    if db == "postgres":
        _ensure_pg_database()
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
    else:  # the SQLite files live in the (fresh) INSTANCE_PATH
        for name in ("eventuall.db", "live.db"):
            for suffix in ("", "-wal", "-shm"):
                path = Path(env["INSTANCE_PATH"]) / (name + suffix)
                if path.exists():
                    path.unlink()
    redis_py.Redis.from_url(REDIS_URL).flushdb()
    done = subprocess.run([str(VENV_BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"flask db upgrade failed:\n{done.stdout}\n{done.stderr}")


def _ensure_pg_database():
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DBNAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{PG_DBNAME}"')


def run_per_database(script, argv, databases):
    """Re-run `script` once per database in a child process; returns the worst exit code."""
    worst = 0
    for db in databases:
        print(f"\n=== {db} ===", flush=True)
        code = subprocess.call([PYTHON, script, *argv, "--db", db, "--child"], cwd=ROOT)
        if code:
            print(f"{Path(script).name} on {db}: exit code {code}", flush=True)
        worst = max(worst, code)
    return worst


def use_env(env):
    """Make this process see the same settings as the servers (before importing app)."""
    os.environ.clear()
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def quiet_logs():
    """The bench process's own app: keep its INFO lines out of the figures."""
    import logging

    for name in ("alembic", "app", "rq"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_instance_dir(db):
    return tempfile.mkdtemp(prefix=f"eventuall-bench-{db}-")


# --------------------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process we started, in its own process group, with its output in files."""

    def __init__(self, name, args, env, log_dir):
        self.name = name
        self.out_path = Path(log_dir) / f"{name}.out"
        self.err_path = Path(log_dir) / f"{name}.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._out, stderr=self._err,
                                     start_new_session=True)

    def stderr_text(self):
        return self.err_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # our own group: master and its children
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()
        self._err.close()


def start_gunicorn(name, module, env, log_dir, workers, threads, port=None):
    port = port or free_port()
    args = [str(VENV_BIN / "gunicorn"), module, "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
            "-w", str(workers), "--threads", str(threads), "--no-control-socket"]
    server = Process(name, args, env, log_dir)
    server.port = port
    server.workers = workers
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{name} exited:\n{server.stderr_text()[-3000:]}")
        booted = server.stderr_text().count("Booting worker with pid")
        if booted >= workers and _http_ok(port, "/static/css/app.css"):
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not start in 60 s:\n{server.stderr_text()[-3000:]}")


def _http_ok(port, path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU of a process and its descendants (all threads), from /proc."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / _TICK
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


def cpu_seconds_named(name):
    """User + system CPU of every process called `name` (PostgreSQL's backends: "postgres"),
    with that of their children already reaped (a backend that exited counts in the
    postmaster's cutime/cstime)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, fields = stat.read_text().rsplit(")", 1)
        except OSError:
            continue  # gone meanwhile
        if head.split("(", 1)[1] == name:
            fields = fields.split()
            total += sum(int(v) for v in fields[11:15]) / _TICK
    return total


def machine_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------- signed-in buyers

class Signer:
    """Builds what a browser holds after signing in: Flask's signed session cookie with
    Flask-Login's keys (user id, fresh, the session-protection identifier) and the
    Flask-WTF raw CSRF token; plus the signed token a page would put in its forms."""

    def __init__(self, app):
        from flask_login.utils import _create_identifier
        from itsdangerous import URLSafeTimedSerializer

        self.cookie_name = app.config["SESSION_COOKIE_NAME"]
        self._session_serializer = app.session_interface.get_signing_serializer(app)
        self._csrf_serializer = URLSafeTimedSerializer(
            app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key, salt="wtf-csrf-token")
        with app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"},
                                      headers={"User-Agent": USER_AGENT}):
            self._identifier = _create_identifier()  # what login_user() stores as _id

    def buyer(self, user_id):
        raw_csrf = hashlib.sha1(os.urandom(64)).hexdigest()  # as flask_wtf.csrf.generate_csrf
        session = {"_user_id": user_id, "_fresh": True, "_id": self._identifier, "csrf_token": raw_csrf}
        cookie = f"{self.cookie_name}={self._session_serializer.dumps(session)}"
        return cookie, self._csrf_serializer.dumps(raw_csrf)


# --------------------------------------------------------------------------- HTTP client

def build_post(path, body, cookie, headers=None):
    body = body.encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


async def _one(port, payload, start, timeout):
    await start.wait()
    t0 = time.perf_counter()
    status = 0
    body = b""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)  # Connection: close: read to EOF
        writer.close()
        if data.startswith(b"HTTP/1."):
            status = int(data[9:12])
            body = data
    except (OSError, asyncio.TimeoutError):
        status = -1
    return status, time.perf_counter() - t0, t0, time.perf_counter(), body


async def _burst(port, payloads, timeout):
    start = asyncio.Event()
    tasks = [asyncio.ensure_future(_one(port, p, start, timeout)) for p in payloads]
    await asyncio.sleep(0)  # every task is parked on the event
    start.set()  # ... and all of them go at the same moment
    return await asyncio.gather(*tasks)


def burst(port, payloads, timeout=60):
    """Send every payload at once on its own connection. Returns (results, wall seconds),
    results = [(status, latency, body)]; wall = first send to last response."""
    results = asyncio.run(_burst(port, payloads, timeout))
    wall = max(r[3] for r in results) - min(r[2] for r in results)
    return [(s, lat, body) for s, lat, _, _, body in results], wall


# --------------------------------------------------------------------------- figures

def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def table(rows, headers):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, row)) for row in rows]
    return "\n".join(out)


def log_problems(text):
    """Counts of the lines that must never appear in a server's log."""
    return {
        "database is locked": text.count("database is locked"),
        "Traceback": text.count("Traceback"),
    }


# --------------------------------------------------------------------------- profiling

class PySpy:
    """`py-spy record` on a process we started (and its children), in raw (collapsed
    stack) format, summarised by summarise_profile(). Optional: --py-spy PATH."""

    def __init__(self, binary, pid, out_path, rate=200):
        self.out_path = Path(out_path)
        self.proc = subprocess.Popen([binary, "record", "--pid", str(pid), "--subprocesses", "--idle",
                                      "--rate", str(rate), "--format", "raw", "--output", str(out_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1)  # attached

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.out_path


def summarise_profile(path, within, top=30, children=True, keep=("app/", "rq/", "sqlalchemy/orm/session", "sqlalchemy/engine/base",
                                                   "redis/client", "flask/", "werkzeug/", "jinja2/", "gunicorn/",
                                                   "logging/", "flask_login", "flask_wtf", "psycopg", "sqlite3")):
    """Share of the wall-clock samples of the threads doing the work (stacks through a frame
    containing `within`, idle waits included: a job waiting on Redis or the database is
    time the job takes), per frame, each frame counted once per stack."""
    counts, total = {}, 0
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or within not in stack or (not children and stack.count("process ") > 1):
            continue  # not the work, or a forked child we leave out (RQ's scheduler)
        n = int(n)
        total += n
        for frame in set(stack.split(";")):
            counts[frame] = counts.get(frame, 0) + n
    rows = sorted(((v, k) for k, v in counts.items() if any(s in k for s in keep)), reverse=True)[:top]
    return total, [(f"{100 * v / max(total, 1):5.1f}%", k[:140]) for v, k in rows]
