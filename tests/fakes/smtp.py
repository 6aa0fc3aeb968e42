"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives: the test outbox."""
import email
import email.policy
import re
import socket
import threading

from aiosmtpd.controller import Controller


class Outbox:
    def __init__(self):
        self.messages = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
        return "250 OK"

    def clear(self):
        with self._lock:
            self.messages.clear()

    def to(self, address):
        return [m for m in self.messages if m["To"] == address]

    def latest_code(self, address):
        """The 6-digit code in the newest message to this address."""
        for message in reversed(self.to(address)):
            match = re.search(r"\b(\d{6})\b", message.get_body(("plain",)).get_content())
            if match:
                return match.group(1)
        raise AssertionError(f"no sign-in code was mailed to {address}")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServer:
    def __init__(self):
        self.outbox = Outbox()
        self.port = free_port()
        self.controller = Controller(self.outbox, hostname="127.0.0.1", port=self.port)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()
