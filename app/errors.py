"""Domain errors and the HTTP error pages (a full page, or a fragment for htmx)."""
import logging

from flask import render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.htmx import is_htmx_request

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule said no. The message is written for the user; status is the HTTP answer."""

    status = 400

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(DomainError):
    status = 404


class Forbidden(DomainError):
    status = 403


TITLES = {
    400: "That request did not work",
    403: "You do not have access to this",
    404: "Page not found",
    405: "That action is not allowed here",
    413: "That upload is too large",
    422: "Please check the form",
    429: "Too many attempts",
    500: "Something went wrong on our side",
}


def render_error(status, message=None):
    title = TITLES.get(status, "Error")
    template = "errors/_error.html" if is_htmx_request() else "errors/page.html"
    return render_template(template, status=status, title=title, message=message), status


def register(app):
    from app.extensions import db

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_error(400, "This form has expired or did not come from Eventuall. "
                                 "Reload the page and try again.")

    @app.errorhandler(DomainError)
    def domain_error(exc):
        db.session.rollback()
        return render_error(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if exc.code == 429:
            message = "You have tried too many times. Please wait a few minutes and try again."
        elif exc.code == 413:
            message = "The file is larger than we accept."
        else:  # a message given to abort(), not Werkzeug's own technical one
            message = exc.description if exc.description != type(exc).description else None
        return render_error(exc.code, message)

    @app.errorhandler(Exception)
    def unexpected_error(exc):
        db.session.rollback()
        log.exception("unhandled error")
        return render_error(500, "We have been told about it. Please try again in a moment.")
