"""The public side: home page, the catalog (list, search, organiser pages) and event pages."""
from functools import partial
from zoneinfo import ZoneInfo

from flask import Blueprint, render_template, request, url_for
from flask_login import current_user

from app.events import services
from app.events.forms import CatalogFilterForm
from app.htmx import render_page

bp = Blueprint("events", __name__)


@bp.get("/")
def home():
    return render_template("events/home.html", featured=services.featured_events(),
                           upcoming=services.upcoming_events(), form=CatalogFilterForm())


@bp.get("/events")
def index():
    form = CatalogFilterForm(request.args)
    after = services.decode_cursor(request.args.get("after"))
    if not form.validate():
        return render_page("events/index.html", "events/_results.html", status=422, form=form, page=None)
    page = services.catalog_page(form.filters(), after)
    return _results_page("events/index.html", page, after, partial(url_for, "events.index", **form.query_args()),
                         form=form)


@bp.get("/organisers/<account_id>")
def organiser(account_id):
    account = services.public_account(account_id)
    after = services.decode_cursor(request.args.get("after"))
    page = services.catalog_page(services.CatalogFilters(account_id=account.id), after)
    return _results_page("events/organiser.html", page, after,
                         partial(url_for, "events.organiser", account_id=account.id), account=account)


def _results_page(page_template, page, after, page_url, **context):
    """htmx: "load more" (a cursor) gets the next cards and link; a new filter the whole list.
    `page_url(after=...)` links a page of the same list."""
    fragment = "events/_result_page.html" if after else "events/_results.html"
    return render_page(page_template, fragment, page=page,
                       next_url=page.next_cursor and page_url(after=page.next_cursor),
                       first_url=page_url() if after else None, **context)


@bp.get("/events/<event_id>")
def detail(event_id):
    event = services.visible_event(event_id, current_user)
    zone = ZoneInfo(event.timezone)
    return render_template("events/detail.html", event=event,
                           starts_local=event.starts_at.astimezone(zone),
                           ends_local=event.ends_at.astimezone(zone),
                           rooms=services.enterable_rooms(event, current_user),
                           ticket_types=services.ticket_types_on_sale(event))


@bp.get("/events/<event_id>/availability")
def availability(event_id):
    """Out-of-band swaps for the ticket panel's live availability."""
    event = services.visible_event(event_id, current_user)
    return render_template("events/_availabilities.html", ticket_types=services.ticket_types_on_sale(event))
