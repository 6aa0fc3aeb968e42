"""Mail jobs. Args are primitives; a rerun sends again, which for mail is the lesser harm."""
from rq import Retry

from app.extensions import redis
from app.integrations import email


def send_email(to, subject, text, html=None):
    email.send(to, subject, text, html)


def queue_email(to, subject, text, html=None):
    """Enqueue after the commit. The description is what the worker logs: never the body."""
    return redis.queue().enqueue(
        send_email, to, subject, text, html,
        description=f"send_email to {to}",
        retry=Retry(max=3, interval=[10, 60, 300]),
    )
