"""My tickets, one ticket's page, and its QR code, PDF and calendar file."""
from flask import Response, render_template, url_for
from flask_login import current_user, login_required
from werkzeug.utils import secure_filename

from app.tickets import bp, services


@bp.after_request
def keep_out_of_caches(response):
    # Every answer here shows or encodes a ticket code, which gets its bearer in.
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/tickets")
@login_required
def mine():
    return render_template("tickets/mine.html", groups=services.tickets_of(current_user))


@bp.get("/tickets/<ticket_id>")
@login_required
def detail(ticket_id):
    ticket = services.ticket_for(current_user, ticket_id)
    starts_local, ends_local = services.local_times(ticket.event)
    return render_template("tickets/detail.html", ticket=ticket, event=ticket.event, order=ticket.order,
                           holder=services.holder_label(ticket), payment_due=services.payment_due(ticket),
                           starts_local=starts_local, ends_local=ends_local)


@bp.get("/tickets/<ticket_id>/qr.svg")
@login_required
def qr(ticket_id):
    ticket = services.usable_ticket_for(current_user, ticket_id)
    return Response(services.qr_svg(ticket), mimetype="image/svg+xml")


def _download(body, mimetype, filename):
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get("/tickets/<ticket_id>.pdf")
@login_required
def pdf(ticket_id):
    ticket = services.usable_ticket_for(current_user, ticket_id)
    return _download(services.ticket_pdf(ticket), "application/pdf", f"ticket-{ticket.order.number}.pdf")


@bp.get("/tickets/<ticket_id>.ics")
@login_required
def ics(ticket_id):
    ticket = services.ticket_for(current_user, ticket_id)
    body = services.ticket_ics(ticket, url_for("events.detail", event_id=ticket.event_id, _external=True),
                               url_for("tickets.detail", ticket_id=ticket.id, _external=True))
    return _download(body, "text/calendar", f"{secure_filename(ticket.event.slug) or 'event'}.ics")
