"""A holder's tickets: the list, the ticket page, its QR code, PDF and calendar file,
who may see them, and the confirmation e-mail that links them."""
import re
import zlib
from datetime import timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import segno
from sqlalchemy import select, update

from app.extensions import db
from app.models import Event, Order, Ticket, TicketStatus, User
from tests.conftest import post

TICKET_PATHS = ("/tickets/{id}", "/tickets/{id}/qr.svg", "/tickets/{id}.pdf", "/tickets/{id}.ics")


def buy(client, ticket_type_id, quantity=1, method="free"):
    """Take seats and confirm, as the buyer's browser does; returns the order id."""
    held = post(client, "/checkout/hold", {"ticket_type_id": ticket_type_id, "quantity": quantity},
                token_from="/dashboard")
    assert held.status_code == 302, held.get_data(as_text=True)
    hold_id = held.location.rsplit("/", 1)[-1]
    confirmed = post(client, f"/checkout/{hold_id}/confirm", {"payment_method": method, "idempotency_key": hold_id},
                     token_from="/dashboard")
    assert confirmed.status_code == 302, confirmed.get_data(as_text=True)
    return confirmed.location.rsplit("/", 1)[-1]


def tickets_of_order(order_id):
    db.session.expire_all()
    return db.session.scalars(select(Ticket).where(Ticket.order_id == order_id).order_by(Ticket.created_at)).all()


@pytest.fixture
def bought(user_client, make_event, make_ticket_type, ctx):
    """Alice's one free ticket to "Launch Night" (Lisbon time): (client, ticket)."""
    client, _ = user_client
    event_id = make_event(timezone="Europe/Lisbon")
    order_id = buy(client, make_ticket_type(event_id, name="Standing"))
    return client, tickets_of_order(order_id)[0]


@pytest.fixture
def bob(app, make_user, sign_in):
    make_user("bob@example.com", name="Bob Builder")
    return sign_in("bob@example.com", app.test_client())


def page_text(response):
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


# --- My tickets --------------------------------------------------------------------

def test_my_tickets_are_grouped_by_event_upcoming_first(user_client, make_event, make_ticket_type, ctx):
    client, _ = user_client
    later = make_event(name="Later Gig", starts_in=timedelta(days=20))
    sooner = make_event(name="Sooner Gig", starts_in=timedelta(days=2))
    over = make_event(name="Past Gig", starts_in=timedelta(days=1))
    buy(client, make_ticket_type(later), quantity=2)
    buy(client, make_ticket_type(sooner))
    buy(client, make_ticket_type(over))
    past_start = db.session.get(Event, over).starts_at - timedelta(days=10)
    db.session.execute(update(Event).where(Event.id == over)
                       .values(starts_at=past_start, ends_at=past_start + timedelta(hours=2)))
    db.session.commit()

    page = page_text(client.get("/tickets"))
    names = re.findall(r'data-testid="ticket-group">\s*<h2><a [^>]*>([^<]+)</a>', page)
    assert names == ["Sooner Gig", "Later Gig", "Past Gig"]
    assert page.count('data-testid="my-ticket"') == 4
    assert client.get("/tickets").headers["Cache-Control"] == "private, no-store"


def test_my_tickets_when_there_are_none(user_client):
    client, _ = user_client
    assert "You have no tickets yet." in page_text(client.get("/tickets"))


def test_my_tickets_needs_sign_in(client):
    response = client.get("/tickets")
    assert response.status_code == 302 and "/auth/login" in response.location


# --- the ticket page ---------------------------------------------------------------

def test_ticket_page_shows_event_ticket_holder_order_and_qr(bought):
    client, ticket = bought
    page = page_text(client.get(f"/tickets/{ticket.id}"))
    assert "Launch Night" in page and "(Europe/Lisbon)" in page
    assert 'data-testid="ticket-type">Standing<' in page
    assert 'data-testid="ticket-holder">Alice Example<' in page
    assert ticket.order.number in page
    assert f'src="/tickets/{ticket.id}/qr.svg"' in page and ticket.code in page
    assert f'href="/tickets/{ticket.id}.pdf"' in page and f'href="/tickets/{ticket.id}.ics"' in page
    assert ">valid<" in page


def test_the_order_page_links_each_ticket(bought):
    client, ticket = bought
    page = page_text(client.get(f"/orders/{ticket.order_id}"))
    assert f'href="/tickets/{ticket.id}"' in page and 'href="/tickets"' in page


def test_a_checked_in_or_cancelled_ticket_says_so(bought):
    client, ticket = bought
    db.session.execute(update(Ticket).where(Ticket.id == ticket.id).values(checked_in_at=ticket.created_at))
    db.session.commit()
    assert "checked in" in page_text(client.get(f"/tickets/{ticket.id}"))
    db.session.execute(update(Ticket).where(Ticket.id == ticket.id).values(status=TicketStatus.VOID))
    db.session.commit()
    page = page_text(client.get(f"/tickets/{ticket.id}"))
    assert "was cancelled" in page and "qr.svg" not in page
    for path in ("/tickets/{id}/qr.svg", "/tickets/{id}.pdf"):
        response = client.get(path.format(id=ticket.id))
        assert response.status_code == 410 and "This ticket was cancelled." in response.get_data(as_text=True)


def test_pay_later_ticket_says_payment_is_due(user_client, make_event, make_ticket_type, ctx):
    client, _ = user_client
    order_id = buy(client, make_ticket_type(make_event(allow_pay_later=True), price_cents=1500),
                   method="pay_later")
    ticket = tickets_of_order(order_id)[0]
    assert "Payment is due at the door." in page_text(client.get(f"/tickets/{ticket.id}"))
    assert b"Payment due at the door" in pdf_text(client.get(f"/tickets/{ticket.id}.pdf").data)


# --- only the holder (or the buyer) ------------------------------------------------------

@pytest.mark.parametrize("path", TICKET_PATHS)
def test_someone_elses_ticket_is_404(bought, bob, path):
    _, ticket = bought
    response = bob.get(path.format(id=ticket.id))
    assert response.status_code == 404
    assert ticket.code not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", TICKET_PATHS)
def test_tickets_need_sign_in(bought, app, path):
    _, ticket = bought
    response = app.test_client().get(path.format(id=ticket.id))
    assert response.status_code == 302 and "/auth/login" in response.location


@pytest.mark.parametrize("ticket_id, status", [("nope", 404), ("x" * 300, 404), ("..%2F..%2Fetc", 404),
                                               ("%00", 400)])  # NUL is refused before any lookup
def test_unknown_ticket_ids_are_refused(user_client, ticket_id, status):
    client, _ = user_client
    assert client.get(f"/tickets/{ticket_id}").status_code == status


def test_a_ticket_passed_on_is_seen_by_its_holder_and_its_buyer(bought, bob, app, make_user, sign_in):
    alice, ticket = bought
    bob_id = db.session.scalar(select(User.id).where(User.email == "bob@example.com"))
    db.session.execute(update(Ticket).where(Ticket.id == ticket.id).values(holder_user_id=bob_id))
    db.session.commit()
    assert 'data-testid="ticket-holder">Bob Builder<' in page_text(bob.get(f"/tickets/{ticket.id}"))
    assert "Launch Night" in page_text(bob.get("/tickets"))
    assert page_text(alice.get(f"/tickets/{ticket.id}"))  # the buyer still sees it
    make_user("carol@example.com")
    carol = sign_in("carol@example.com", app.test_client())
    assert carol.get(f"/tickets/{ticket.id}").status_code == 404
    assert "You have no tickets yet." in page_text(carol.get("/tickets"))


# --- QR code, PDF, calendar ---------------------------------------------------------

def svg_modules(svg):
    """The dark modules an SVG from segno draws, as (row, column) from the top-left
    corner of the code (the quiet zone taken off). Its path is runs of `h` lines."""
    path = re.search(r' d="([^"]+)"', svg).group(1)
    modules, x, y, origin = set(), 0.0, 0.0, None
    for command, numbers in re.findall(r"([MmHh])([-\d. ]+)", path):
        values = [float(n) for n in numbers.split()]
        if command == "M":
            x, y = values
        elif command == "m":
            x, y = x + values[0], y + values[1]
        else:
            origin = origin or (x, y)  # the first run starts the top-left finder pattern
            modules.update((int(y - origin[1]), int(x - origin[0]) + i) for i in range(int(values[0])))
            x += values[0]
    return modules


def test_qr_code_is_an_svg_of_the_ticket_code_alone(bought):
    client, ticket = bought
    response = client.get(f"/tickets/{ticket.id}/qr.svg")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert response.headers["Cache-Control"] == "private, no-store"
    svg = response.get_data(as_text=True)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    expected = segno.make_qr(ticket.code, error="m")
    assert not expected.is_micro
    dark = {(row, col) for row, line in enumerate(expected.matrix) for col, bit in enumerate(line) if bit}
    assert svg_modules(svg) == dark
    # A code for anything more (a URL, the holder) would draw another pattern.
    other = segno.make_qr(ticket.code + "?", error="m")
    assert svg_modules(svg) != {(r, c) for r, line in enumerate(other.matrix) for c, bit in enumerate(line) if bit}


def pdf_text(data):
    """Every content stream of a PDF, inflated (fpdf2 compresses them)."""
    chunks = [data]
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            chunks.append(zlib.decompress(stream))
        except zlib.error:
            pass
    return b"\n".join(chunks)


def test_pdf_has_the_event_the_local_time_the_ticket_and_the_qr_code(bought):
    client, ticket = bought
    response = client.get(f"/tickets/{ticket.id}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert f'filename="ticket-{ticket.order.number}.pdf"' in response.headers["Content-Disposition"]
    text = pdf_text(response.data)
    local = ticket.event.starts_at.astimezone(ZoneInfo("Europe/Lisbon"))
    for expected in ("Launch Night", "Standing", "Alice Example", ticket.order.number, ticket.code,
                     f"{local:%A %d %B %Y, %H:%M}", "Europe/Lisbon"):
        assert expected.encode() in text, expected
    assert b"/Subtype /Image" in response.data


def test_pdf_survives_names_its_fonts_cannot_draw(user_client, make_event, make_ticket_type, ctx):
    client, _ = user_client
    order_id = buy(client, make_ticket_type(make_event(name="Café – Ünïcode 🎉 東京"), name="Entrée €5"))
    ticket = tickets_of_order(order_id)[0]
    response = client.get(f"/tickets/{ticket.id}.pdf")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    text = pdf_text(response.data)
    assert "Café – Ünïcode ? ??".encode("windows-1252") in text and "Entrée €5".encode("windows-1252") in text


def test_ics_is_an_rfc5545_event_in_utc(user_client, make_event, make_ticket_type, ctx):
    client, _ = user_client
    event_id = make_event(name="Rock, Paper; Scissors \\ Live", timezone="America/New_York")
    ticket = tickets_of_order(buy(client, make_ticket_type(event_id)))[0]
    response = client.get(f"/tickets/{ticket.id}.ics")
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    body = response.data
    assert body.startswith(b"BEGIN:VCALENDAR\r\n") and body.endswith(b"END:VCALENDAR\r\n")
    assert b"\n" not in body.replace(b"\r\n", b"")  # CRLF only
    assert all(len(line) <= 75 for line in body.split(b"\r\n"))  # folded
    event = db.session.get(Event, event_id)
    assert f"DTSTART:{event.starts_at:%Y%m%dT%H%M%S}Z\r\n".encode() in body
    assert f"DTEND:{event.ends_at:%Y%m%dT%H%M%S}Z\r\n".encode() in body
    assert b"SUMMARY:Rock\\, Paper\\; Scissors \\\\ Live\r\n" in body
    assert ticket.code.encode() not in body
    parsed = icalendar.Calendar.from_ical(body)
    [entry] = parsed.walk("VEVENT")
    assert str(entry["SUMMARY"]) == "Rock, Paper; Scissors \\ Live"
    assert entry["UID"] == f"event-{event_id}@eventuall"
    assert str(entry["URL"]) == f"http://localhost/events/{event_id}"
    assert f"http://localhost/tickets/{ticket.id}" in str(entry["DESCRIPTION"])
    assert entry.decoded("DTSTART") == event.starts_at


# --- the confirmation e-mail -------------------------------------------------------------

def test_confirmation_mail_links_each_ticket_and_goes_out_through_the_job(
        user_client, make_event, make_ticket_type, outbox, run_jobs, ctx):
    client, _ = user_client
    order_id = buy(client, make_ticket_type(make_event()), quantity=2)
    order = db.session.get(Order, order_id)

    def confirmations():
        return [m for m in outbox.to("alice@example.com") if order.number in m["Subject"]]

    assert confirmations() == []  # queued after the commit, not sent in the request
    run_jobs()
    [mail] = confirmations()
    body = mail.get_body(("plain",)).get_content()
    for ticket in tickets_of_order(order_id):
        assert f"http://localhost/tickets/{ticket.id}" in body
        assert ticket.code not in body  # the mail links the ticket, the code stays on its page
    assert f"http://localhost/orders/{order_id}" in body
