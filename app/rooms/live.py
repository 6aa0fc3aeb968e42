"""The socket hub: one per web process (per app), fanning Redis messages out to
the sockets this process holds.

One subscriber thread listens on every room channel (pattern room:*) and hands
each message to the local sockets of that room as an HTML fragment swapped out
of band. Presence changes are coalesced: a burst of joins and leaves in a room
costs one render of the list per window, sent once to each local socket.

A socket takes its fragment at once, or what it cannot take waits in its own queue
for a sender thread (Connection.send): a client that stops reading never holds up
the rest of the room.
"""
import json
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import select
import socket
import threading
import time
import uuid
from datetime import datetime

from flask import render_template
from simple_websocket import ConnectionClosed
from wsproto.events import TextMessage

from app.extensions import redis
from app.rooms import services

log = logging.getLogger(__name__)

PRESENCE_WINDOW = 0.25  # seconds: at most one presence render per room per window
# A socket that takes nothing of a waiting fragment for this long is closed (the page
# reconnects) rather than keep a sender, and a growing queue, for as long as it stalls.
SEND_TIMEOUT = 2.0
SENDERS = 8  # threads per process writing fragments to sockets


class Connection:
    """One open socket: what the hub needs to know to send it fragments.

    A fragment is written at once when the socket takes it all without waiting (the
    common case); what would wait is queued, in order, and written by a sender thread,
    so a client that stops reading holds up only itself. A client that takes nothing
    for SEND_TIMEOUT is disconnected (its own thread cleans up, the page reconnects).
    """

    def __init__(self, ws, room_id, user_id, label, can_moderate=False):
        self.id = uuid.uuid4().hex
        self.ws = ws
        self.room_id = room_id
        self.user_id = user_id
        self.label = label
        self.can_moderate = can_moderate
        self._lock = threading.Lock()  # the hub, a sender and the socket's own thread all send
        self._waiting = deque()  # encoded frames (or their rest) the socket has not taken yet
        self._closed = False

    def send(self, text):
        with self._lock:
            if self._closed:
                raise ConnectionClosed()
            sock, protocol = getattr(self.ws, "sock", None), getattr(self.ws, "ws", None)
            if sock is None or protocol is None or not getattr(self.ws, "connected", False):
                self.ws.send(text)  # not a simple-websocket socket, or closed (raises)
                return
            # Encoded here, under the lock: frames (and a compression context) stay in order.
            data = protocol.send(TextMessage(data=text))
            if self._waiting:
                self._waiting.append(data)  # behind what already waits
                return
            rest = _send_available(sock, data)
            if rest:
                self._waiting.append(rest)
                _sender_pool().submit(self._drain, sock)

    def _drain(self, sock):
        """A sender's work: write what waits, oldest first, each within SEND_TIMEOUT."""
        while True:
            with self._lock:
                if not self._waiting or self._closed:
                    return
                data = self._waiting[0]
            try:  # outside the lock: send() only appends while something waits
                _send_within(sock, data, SEND_TIMEOUT)
            except (TimeoutError, OSError) as exc:
                if isinstance(exc, TimeoutError):
                    log.info("closed the room socket of %s: it did not read in %s s", self.user_id, SEND_TIMEOUT)
                with self._lock:
                    self._closed = True
                    self._waiting.clear()
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # its reader thread sees the end
                except OSError:
                    pass
                return
            with self._lock:
                self._waiting.popleft()


_senders = None
_senders_lock = threading.Lock()


def _sender_pool():
    global _senders
    with _senders_lock:
        if _senders is None:
            _senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="room-send")
        return _senders


def _send_available(sock, data):
    """Write what the socket takes without waiting; return the rest (empty when all went).

    Asks poll first: under gevent, send itself would wait for room even with MSG_DONTWAIT.
    """
    view = memoryview(data)
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    while view and poller.poll(0):
        try:
            view = view[sock.send(view, socket.MSG_DONTWAIT):]
        except (BlockingIOError, InterruptedError):
            break
    return bytes(view)


def _send_within(sock, data, timeout):
    """Write all of data, waiting for the socket to take it for at most timeout seconds.

    Wait for room first, then send without blocking: gevent's socket.send would itself
    wait, with no end, for a client that does not read. poll, not select: a busy
    process has descriptors above select's 1024.
    """
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client did not read in time")
        if not poller.poll(remaining * 1000):
            continue
        try:
            view = view[sock.send(view, socket.MSG_DONTWAIT):]
        except (BlockingIOError, InterruptedError):
            pass


class Hub:
    def __init__(self, app, window=PRESENCE_WINDOW):
        self.app = app
        self.window = window
        self._rooms = {}          # room id -> {conn id: Connection}
        self._lock = threading.Lock()
        self._pending = {}        # room id -> Timer of the coalesced presence render
        self._thread = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.presence_renders = 0  # counted for tests and the log

    # --- sockets of this process --------------------------------------

    def add(self, connection):
        self.start()
        with self._lock:
            self._rooms.setdefault(connection.room_id, {})[connection.id] = connection

    def discard(self, connection):
        with self._lock:
            room = self._rooms.get(connection.room_id, {})
            room.pop(connection.id, None)
            if not room:
                self._rooms.pop(connection.room_id, None)

    def local(self, room_id):
        with self._lock:
            return list(self._rooms.get(room_id, {}).values())

    # --- the subscriber thread ----------------------------------------

    def start(self):
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._ready.clear()
            self._thread = threading.Thread(target=self._listen, name="room-hub", daemon=True)
            self._thread.start()
        self._ready.wait(5)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for timer in self._pending.values():
                timer.cancel()
            self._pending.clear()

    def _listen(self):
        with self.app.app_context():
            pubsub = None
            while not self._stop.is_set():
                try:
                    if pubsub is None:
                        pubsub = redis.client.pubsub(ignore_subscribe_messages=True)
                        pubsub.psubscribe("room:*")
                        self._ready.set()
                    message = pubsub.get_message(timeout=1.0)
                except Exception as exc:  # Redis went away: wait, then subscribe again
                    log.warning("room hub lost Redis (%s); subscribing again", exc)
                    pubsub = None
                    self._stop.wait(1.0)
                    continue
                if message and message.get("type") == "pmessage":
                    self.dispatch(message["channel"], message["data"])
            if pubsub is not None:
                try:
                    pubsub.close()
                except Exception:
                    pass

    # --- messages -------------------------------------------------------

    def dispatch(self, channel, data):
        """Handle one message from a room channel; a bad one is logged, never fatal."""
        try:
            channel = channel.decode() if isinstance(channel, bytes) else channel
            room_id = channel.split(":", 1)[1]
            payload = json.loads(data)
            kind = payload["type"]
        except (ValueError, KeyError, IndexError, TypeError):
            log.warning("room hub ignored a malformed message on %r", channel)
            return
        if not self.local(room_id):
            return
        try:
            if kind == "presence":
                self.presence_changed(room_id)
            elif kind == "chat":
                self._fan_out_chat(room_id, payload["message"])
            elif kind == "chat_deleted":
                self.broadcast(room_id, f'<div id="msg-{payload["message_id"]}" hx-swap-oob="delete"></div>')
            elif kind in ("stage", "vet"):
                # The stage's fragments differ per person (private vetting, own place in
                # the queue): app/rooms/stage_routes.py renders them, send_to_user delivers.
                from app.rooms import stage_routes

                if kind == "stage":
                    stage_routes.fan_out_stage(self, room_id, payload.get("user_ids") or ())
                else:
                    stage_routes.fan_out_vet(self, room_id, payload)
        except Exception:
            log.exception("room hub failed on a %s message", kind)

    def presence_changed(self, room_id):
        """Schedule one presence render for the room unless one is already due."""
        with self._lock:
            if room_id in self._pending:
                return
            timer = threading.Timer(self.window, self._render_presence, args=(room_id,))
            timer.daemon = True
            self._pending[room_id] = timer
        timer.start()

    def _render_presence(self, room_id):
        with self._lock:
            self._pending.pop(room_id, None)
        if not self.local(room_id):
            return
        with self.app.app_context():
            presence = services.presence_context(room_id)
        video = bool(self.app.config.get("LIVEKIT_URL"))
        rendered = {}  # moderators see video controls beside each person
        for connection in self.local(room_id):
            moderate = connection.can_moderate
            if moderate not in rendered:
                rendered[moderate] = self.render("rooms/_presence.html", **presence, oob=True, broadcast=True,
                                                 room_id=room_id, can_moderate=moderate,
                                                 livekit_configured=video)
                self.presence_renders += 1
            self.send(connection, rendered[moderate])

    def _fan_out_chat(self, room_id, message):
        message = dict(message, room_id=room_id, created_at=datetime.fromisoformat(message["created_at"]))
        rendered = {}
        for connection in self.local(room_id):
            moderate = connection.can_moderate
            if moderate not in rendered:
                rendered[moderate] = self.render("rooms/_chat_append.html", message=message, room_id=room_id,
                                                 can_moderate=moderate, broadcast=True)
            self.send(connection, rendered[moderate])

    def render(self, template, **context):
        """Render for everyone in the room: nobody's request, so no one's session
        (htmx sends the CSRF token from the page's hx-headers)."""
        with self.app.test_request_context("/"):
            return render_template(template, **context)

    def broadcast(self, room_id, html):
        for connection in self.local(room_id):
            self.send(connection, html)

    def send_to_user(self, room_id, user_id, html):
        """Send to one person's sockets in the room (every tab), nobody else's."""
        for connection in self.local(room_id):
            if connection.user_id == user_id:
                self.send(connection, html)

    def send(self, connection, html):
        try:
            connection.send(html)
        except Exception:  # a socket that closed under us; its own thread cleans up
            self.discard(connection)


def hub_for(app):
    """This app's hub (one per process in production; tests build a second app)."""
    hub = app.extensions.get("room_hub")
    if hub is None:
        with _create_lock:
            hub = app.extensions.get("room_hub")
            if hub is None:
                hub = app.extensions["room_hub"] = Hub(app)
    return hub


_create_lock = threading.Lock()
