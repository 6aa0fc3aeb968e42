"""A holder's tickets and what they carry to the door: QR code, PDF, calendar entry.

A ticket's code is a bearer credential: whoever shows it gets in. Only the holder
and the order's buyer ever see a ticket; to anyone else it does not exist.
"""
import io
from zoneinfo import ZoneInfo

import icalendar
import segno
from fpdf import FPDF
from sqlalchemy import or_, select
from sqlalchemy.orm import contains_eager, joinedload

from app.errors import DomainError, NotFound
from app.extensions import db
from app.models import Event, Order, OrderStatus, Ticket, TicketStatus
from app.models.base import utcnow

# The PDF's built-in fonts cover Windows-1252 (Western European text, the euro sign,
# typographic dashes and quotes); anything else prints as "?" rather than failing.
PDF_ENCODING = "windows-1252"


def _visible_to(user):
    # The buyer sees the tickets they bought, also ones passed on to someone else.
    return or_(Ticket.holder_user_id == user.id, Order.user_id == user.id)


def tickets_of(user, now=None):
    """[(event, [tickets])]: events still to come or running first, soonest first;
    then past ones, latest first."""
    now = now or utcnow()
    tickets = db.session.scalars(
        select(Ticket).join(Ticket.order).join(Ticket.event).where(_visible_to(user))
        .options(contains_eager(Ticket.order), contains_eager(Ticket.event), joinedload(Ticket.ticket_type))
        .order_by(Event.starts_at, Event.id, Ticket.created_at, Ticket.id)).all()
    by_event = {}
    for ticket in tickets:
        by_event.setdefault(ticket.event, []).append(ticket)
    groups = list(by_event.items())
    return ([group for group in groups if group[0].ends_at > now]
            + [group for group in reversed(groups) if group[0].ends_at <= now])


def ticket_for(user, ticket_id):
    ticket = db.session.scalar(select(Ticket).join(Ticket.order).where(Ticket.id == ticket_id, _visible_to(user)))
    if ticket is None:
        raise NotFound("There is no such ticket.")
    return ticket


def usable_ticket_for(user, ticket_id):
    """The ticket, for what gets someone in (QR, PDF); a cancelled one has none."""
    ticket = ticket_for(user, ticket_id)
    if ticket.status == TicketStatus.VOID:
        raise DomainError("This ticket was cancelled.", 410)
    return ticket


def payment_due(ticket):
    return ticket.order.status == OrderStatus.PENDING


def holder_label(ticket):
    """Who the ticket is for: its holder, else (their account gone) the buyer."""
    if ticket.holder:
        return ticket.holder.label
    return ticket.order.buyer_name or ticket.order.buyer_email or "Unknown holder"


def local_times(event):
    """The event's start and end on the clock of where it happens."""
    zone = ZoneInfo(event.timezone)
    return event.starts_at.astimezone(zone), event.ends_at.astimezone(zone)


def _qr(ticket):
    # Always a full QR code (segno.make may pick a Micro QR, which phones and
    # BarcodeDetector do not read). It holds the code and nothing else.
    return segno.make_qr(ticket.code, error="m")


def qr_svg(ticket):
    out = io.BytesIO()
    _qr(ticket).save(out, kind="svg", scale=8, border=4, xmldecl=False, title="Ticket QR code")
    return out.getvalue()


def _pdf_text(text):
    return text.encode(PDF_ENCODING, "replace").decode(PDF_ENCODING)


def ticket_pdf(ticket):
    """One A4 page: the event, when (in the event's time zone), the ticket, the QR code."""
    event, order = ticket.event, ticket.order
    starts, ends = local_times(event)
    pdf = FPDF(format="A4")
    pdf.core_fonts_encoding = PDF_ENCODING
    pdf.set_title(_pdf_text(f"Ticket: {event.name}"))
    pdf.set_creator("Eventuall")
    pdf.add_page()

    def line(text, size=12, style="", height=7):
        pdf.set_font("helvetica", style, size)
        pdf.multi_cell(0, height, _pdf_text(text), new_x="LMARGIN", new_y="NEXT")

    line("Eventuall ticket", 10)
    line(event.name, 22, "B", 11)
    line(f"{starts:%A %d %B %Y, %H:%M} – {ends:%H:%M} ({event.timezone})", 13)
    pdf.ln(4)
    line(ticket.ticket_type.name, 16, "B", 9)
    line(f"Holder: {holder_label(ticket)}")
    line(f"Order: {order.number}")
    if payment_due(ticket):
        line("Payment due at the door", 12, "B")
    png = io.BytesIO()
    _qr(ticket).save(png, kind="png", scale=10, border=4)
    png.seek(0)
    pdf.ln(4)
    pdf.image(png, x=(pdf.w - 80) / 2, w=80)
    pdf.set_font("courier", "", 11)
    pdf.cell(0, 8, ticket.code, align="C", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def ticket_ics(ticket, event_url, ticket_url, now=None):
    """An iCalendar file with the event: times in UTC, a link to the event and the ticket.

    The UID names the event, so downloading it again (or for a second ticket)
    updates the one calendar entry instead of adding another."""
    event = ticket.event
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Eventuall//Tickets//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    entry = icalendar.Event()
    entry.add("uid", f"event-{event.id}@eventuall")
    entry.add("dtstamp", now or utcnow())
    entry.add("dtstart", event.starts_at)
    entry.add("dtend", event.ends_at)
    entry.add("summary", event.name)
    entry.add("url", event_url)
    entry.add("location", event_url)  # the event happens online, on its page
    entry.add("description", f"{ticket.ticket_type.name}, order {ticket.order.number}.\nYour ticket: {ticket_url}")
    calendar.add_component(entry)
    return calendar.to_ical()
