"""The real WSGI app (wsgi.py: create_app + schema gate) plus two bench-only routes:
POST /_bench/noop (CSRF-exempt, 204): the floor of a POST through the same stack
(gunicorn gthread, Flask, extensions' before/after-request hooks, security headers);
POST /_bench/signed-in-noop (204 behind sign-in and CSRF, as every hold is): what a
signed-in form POST costs before it does anything.

Served only by bench/ticket_drop.py: `gunicorn bench.wsgi_bench:app -c gunicorn.conf.py`.
"""
from flask_login import login_required

from app.extensions import csrf
from wsgi import app


@app.post("/_bench/noop")
@csrf.exempt
def bench_noop():
    return "", 204


@app.post("/_bench/signed-in-noop")
@login_required
def bench_signed_in_noop():
    return "", 204
