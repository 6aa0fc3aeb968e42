"""An event's sales as its organisers see them: orders (search, status, pages, CSV),
one order, and the counts per ticket type (sold, held, checked in)."""
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import selectinload

from app.csv_export import stream_csv
from app.errors import DomainError, NotFound
from app.extensions import db
from app.manage.participants import search_query
from app.models import Order, OrderItem, OrderStatus, Ticket, TicketStatus, TicketType

PAGE_SIZE = 25
ORDER_STATUSES = tuple(OrderStatus)


@dataclass(frozen=True)
class OrderFilters:
    query: str = ""
    status: str = ""


@dataclass
class OrdersPage:
    rows: list  # (order, number of tickets)
    total: int
    page: int
    pages: int


def order_filters(query="", status=""):
    """Check what the filter form sent; the message says what to fix."""
    if status and status not in ORDER_STATUSES:
        raise DomainError("There is no such order status.", 422)
    return OrderFilters(search_query(query), status or "")


def _conditions(event, filters):
    conditions = [Order.event_id == event.id]
    if filters.query:
        needle = filters.query.lower()
        conditions.append(or_(*(func.lower(column).contains(needle, autoescape=True)
                                for column in (Order.number, Order.buyer_email, Order.buyer_name))))
    if filters.status:
        conditions.append(Order.status == filters.status)
    return conditions


def _ticket_count():
    return (select(func.coalesce(func.sum(OrderItem.quantity), 0)).where(OrderItem.order_id == Order.id)
            .scalar_subquery().label("tickets"))


def _newest_first(statement):
    return statement.order_by(Order.created_at.desc(), Order.id)


def orders_page(event, filters, page=1):
    conditions = _conditions(event, filters)
    total = db.session.scalar(select(func.count()).select_from(Order).where(*conditions))
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    page = min(page, pages)  # past the end shows the last page
    rows = db.session.execute(_newest_first(select(Order, _ticket_count()).where(*conditions))
                              .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return OrdersPage([tuple(row) for row in rows], total, page, pages)


def order_of(event, order_id):
    order = db.session.scalar(
        select(Order).where(Order.id == order_id, Order.event_id == event.id)
        .options(selectinload(Order.items).selectinload(OrderItem.ticket_type),
                 selectinload(Order.tickets).selectinload(Ticket.holder)))
    if order is None:
        raise NotFound("There is no such order for this event.")
    return order


@dataclass
class TicketTypeCounts:
    ticket_type: TicketType
    tickets: int      # valid tickets issued (sold, paid or not)
    checked_in: int


def ticket_type_counts(event):
    """Per ticket type, in the organiser's order: valid tickets and how many are in."""
    valid_tickets = and_(Ticket.ticket_type_id == TicketType.id, Ticket.status == TicketStatus.VALID)
    rows = db.session.execute(
        select(TicketType, func.count(Ticket.id), func.count(Ticket.checked_in_at))
        .outerjoin(Ticket, valid_tickets).where(TicketType.event_id == event.id)
        .group_by(TicketType.id).order_by(TicketType.position, TicketType.created_at))
    return [TicketTypeCounts(*row) for row in rows]


def order_totals(event):
    """[(status, currency, orders, total cents)] for the event, pending first."""
    rows = db.session.execute(
        select(Order.status, Order.currency, func.count(), func.coalesce(func.sum(Order.total_cents), 0))
        .where(Order.event_id == event.id).group_by(Order.status, Order.currency)).all()
    return sorted((tuple(row) for row in rows), key=lambda row: (ORDER_STATUSES.index(row[0]), row[1]))


# --- CSV ----------------------------------------------------------------------

CSV_HEADER = ("Order", "Status", "Payment", "Buyer", "E-mail", "Tickets", "Total", "Currency",
              "Ordered at (UTC)", "Paid at (UTC)", "Source")


def _csv_record(order, tickets):
    return (order.number, order.status, order.payment_method, order.buyer_name, order.buyer_email, tickets,
            f"{order.total_cents / 100:.2f}", order.currency, f"{order.created_at:%Y-%m-%d %H:%M:%S}",
            f"{order.paid_at:%Y-%m-%d %H:%M:%S}" if order.paid_at else "", order.retailer)


def orders_csv(event, filters):
    """The whole filtered list as CSV chunks."""
    return stream_csv(CSV_HEADER, _newest_first(select(Order, _ticket_count()).where(*_conditions(event, filters))),
                      lambda row: _csv_record(*row), db.session)
