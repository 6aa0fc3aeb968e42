"""RQ worker with the scheduler: `python worker.py`."""
import sys
import threading

from app import create_app
from app.extensions import redis
from app.jobs.worker import AppWorker, start_periodic_sweeps
from app.migrations_gate import SchemaBehind, check_schema_current


def main():
    app = create_app()
    try:
        check_schema_current(app)
    except SchemaBehind as exc:
        sys.exit(str(exc))
    with app.app_context():
        stop = threading.Event()
        start_periodic_sweeps(stop)
        queues = [redis.queue(name) for name in app.config["RQ_QUEUES"]]
        try:
            AppWorker(queues, connection=redis.client).work(with_scheduler=True)
        finally:
            stop.set()


if __name__ == "__main__":
    main()
