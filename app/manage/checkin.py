"""Check-in at the door: type or scan a ticket code; live counts per ticket type.

The form and its last result are one self-replacing widget, so each answer
comes back with an empty, focused field for the next code. An admission fires
`checkin-changed`, on which the counts refresh (they also poll every 5 s, for
the other doors).
"""
from flask import request
from flask_login import current_user

from app.access.decorators import event_permission
from app.checkout import services as checkout
from app.errors import DomainError
from app.extensions import db
from app.htmx import render_page
from app.manage import bp, sales
from app.tickets.services import holder_label


def _checkin_page(event, fragment, status=200, ticket=None, **result):
    """`ticket` is the one just admitted or, with a refusal, the one used before."""
    return render_page("manage/checkin.html", fragment, status, event=event, counts=sales.ticket_type_counts(event),
                       ticket=ticket, holder=holder_label(ticket) if ticket else None, **result)


@bp.get("/events/<event_id>/checkin")
@event_permission("event.manage")
def checkin(event):
    """The door page; for htmx, the counts (what their poll asks for)."""
    return _checkin_page(event, "manage/_checkin_counts.html")


@bp.post("/events/<event_id>/checkin")
@event_permission("event.manage")
def check_in_code(event):
    try:
        ticket = checkout.check_in(event, request.form.get("code"), current_user)
    except checkout.AlreadyCheckedIn as exc:
        db.session.rollback()
        return _checkin_page(event, "manage/_checkin.html", exc.status, ticket=exc.ticket, refusal=exc.message)
    except DomainError as exc:
        db.session.rollback()
        return _checkin_page(event, "manage/_checkin.html", exc.status, refusal=exc.message)
    db.session.commit()
    response = _checkin_page(event, "manage/_checkin.html", ticket=ticket, admitted=True)
    response.headers["HX-Trigger"] = "checkin-changed"
    return response
