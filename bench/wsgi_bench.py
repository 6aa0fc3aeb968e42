"""The real WSGI app (wsgi.py: create_app + schema gate) plus one bench-only route,
POST /_bench/noop (CSRF-exempt, 204): the floor of a POST through the same stack
(gunicorn gthread, Flask, extensions' before/after-request hooks, security headers).

Served only by bench/ticket_drop.py: `gunicorn bench.wsgi_bench:app -c gunicorn.conf.py`.
"""
from app.extensions import csrf
from wsgi import app


@app.post("/_bench/noop")
@csrf.exempt
def bench_noop():
    return "", 204
