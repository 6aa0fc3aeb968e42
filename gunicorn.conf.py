"""gunicorn settings (Procfile `web`). Environment: PORT, WEB_CONCURRENCY, WEB_THREADS,
WEB_WORKER_CLASS, WEB_WORKER_CONNECTIONS."""
import os
import subprocess
import sys

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gthread by default: every room socket holds a thread of its worker's pool for its
# life (and simple-websocket adds a reader thread), so WEB_THREADS bounds the sockets
# a worker can hold besides its page requests; the pool starts threads only as they
# are needed. 1,000 sockets over two workers measured 100-160 KiB of RSS per socket.
# WEB_WORKER_CLASS=gevent holds them in greenlets instead (60-67 KiB, one OS
# thread; the limit is then WEB_WORKER_CONNECTIONS), but the whole worker then waits
# on every SQLite call (psycopg and Redis yield), LiveKit's asyncio calls run under
# monkey-patching, and the tests do not run under gevent. Either way the app's Redis
# pool must allow as many connections as the worker has sockets registering at once.
# Figures and trade-off: bench/README.md, "Presence".
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
threads = int(os.environ.get("WEB_THREADS", "600"))
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "1000"))
timeout = 60
accesslog = "-"
control_socket_disable = True

_worker_process = None


def on_starting(server):
    """Runs once in the master, before the workers fork."""
    global _worker_process
    if not os.environ.get("REDIS_URL"):
        # One embedded Redis for every web worker and the RQ worker.
        from app.redis_client import embedded_redis_url
        from config import INSTANCE_DIR

        os.environ["REDIS_URL"] = embedded_redis_url(str(INSTANCE_DIR))
    # Fail before forking when the schema is behind, with the gate's message.
    from app import create_app
    from app.migrations_gate import check_schema_current

    check_schema_current(create_app())
    if os.environ.get("WORKER_IN_WEB", "").lower() in {"1", "true", "yes", "on"}:
        # Single-dyno mode: the RQ worker runs beside the web workers.
        _worker_process = subprocess.Popen([sys.executable, "worker.py"])


def on_exit(server):
    if _worker_process is not None:
        _worker_process.terminate()
        _worker_process.wait(timeout=10)
