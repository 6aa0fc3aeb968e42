"""A WSGI app served on 127.0.0.1 in a background thread: the base of every fake service."""
import threading

from werkzeug.serving import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass  # the tests assert on what the fake recorded, not on access logs


class LocalServer:
    def __init__(self, wsgi_app):
        self._server = make_server("127.0.0.1", 0, wsgi_app, threaded=True, request_handler=QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        # a short poll interval so stop() returns quickly
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class FakeService:
    """A fake outside service served on 127.0.0.1: subclasses call _serve(wsgi_app)."""

    def _serve(self, wsgi_app):
        self._http = LocalServer(wsgi_app)
        self.url = self._http.url

    def start(self):
        self._http.start()
        return self

    def stop(self):
        self._http.stop()
