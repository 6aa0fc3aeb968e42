"""Text-message jobs. The description is what the worker logs: never the body."""
from rq import Retry

from app.extensions import redis
from app.integrations import sms


def send_text(phone, body):
    sms.send_text(phone, body)


def queue_text(phone, body):
    """Enqueue after the commit."""
    return redis.queue().enqueue(send_text, phone, body, description=f"send_text to {phone}",
                                 retry=Retry(max=3, interval=[10, 60, 300]))
