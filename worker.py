"""RQ worker with the scheduler: `python worker.py`."""
import sys

from rq import Worker

from app import create_app
from app.extensions import redis
from app.migrations_gate import SchemaBehind, check_schema_current


def main():
    app = create_app()
    try:
        check_schema_current(app)
    except SchemaBehind as exc:
        sys.exit(str(exc))
    with app.app_context():
        queues = [redis.queue(name) for name in app.config["RQ_QUEUES"]]
        Worker(queues, connection=redis.client).work(with_scheduler=True)


if __name__ == "__main__":
    main()
