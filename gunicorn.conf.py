"""gunicorn settings (Procfile `web`). Environment: PORT, WEB_CONCURRENCY, WEB_THREADS."""
import os
import subprocess
import sys

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads, so a websocket can hold one while other requests go on.
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
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
