"""Organiser pages for orders: list (search, status, pages), CSV, detail, mark paid,
with the sales counts per ticket type."""
from flask import Response, flash, make_response, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user
from werkzeug.utils import secure_filename

from app.access.decorators import event_permission
from app.access.services import can
from app.checkout import services as checkout
from app.errors import DomainError
from app.extensions import db
from app.htmx import is_htmx_request, render_page
from app.manage import bp, sales
from app.paging import page_number
from app.tickets.services import holder_label


def _filter_args():
    return request.args.get("q") or "", request.args.get("status") or ""


@bp.get("/events/<event_id>/orders")
@event_permission("orders.view")
def orders(event):
    query, status_filter = _filter_args()  # the raw values go back into the form, to be corrected
    try:
        result = sales.orders_page(event, sales.order_filters(query, status_filter), page_number())
        filter_error, http_status = None, 200
    except DomainError as exc:
        result, filter_error, http_status = sales.OrdersPage([], 0, 1, 1), exc.message, exc.status
    return render_page("manage/orders.html", "manage/_orders.html", http_status, event=event, result=result,
                       query=query.strip(), status_filter=status_filter, filter_error=filter_error,
                       statuses=sales.ORDER_STATUSES, page_size=sales.PAGE_SIZE,
                       counts=sales.ticket_type_counts(event), totals=sales.order_totals(event))


@bp.get("/events/<event_id>/orders.csv")
@event_permission("orders.view")
def orders_csv(event):
    filters = sales.order_filters(*_filter_args())
    response = Response(stream_with_context(sales.orders_csv(event, filters)),
                        mimetype="text/csv", headers={"Cache-Control": "private, no-store"})
    filename = f"{secure_filename(event.slug) or 'event'}-orders.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/events/<event_id>/orders/<order_id>")
@event_permission("orders.view")
def order_detail(event, order_id):
    return render_template("manage/orders_detail.html", event=event, order=sales.order_of(event, order_id),
                           can_mark_paid=can(current_user, "event.manage", event), holder_label=holder_label)


@bp.post("/events/<event_id>/orders/<order_id>/mark-paid")
@event_permission("event.manage")
def mark_order_paid(event, order_id):
    """From the order page or a check-in result: htmx swaps the payment box in place."""
    order = sales.order_of(event, order_id)
    try:
        checkout.mark_paid(order, current_user)
    except DomainError as exc:
        db.session.rollback()
        if not is_htmx_request():
            raise
        return _payment_box(event, order, exc.status, payment_error=exc.message)
    db.session.commit()
    if is_htmx_request():
        return _payment_box(event, order)
    flash(f"Order {order.number} is marked paid.", "success")
    return redirect(url_for("manage.order_detail", event_id=event.id, order_id=order.id))


def _payment_box(event, order, status=200, **extra):
    response = make_response(render_template("manage/_order_payment.html", event=event, order=order,
                                             can_mark_paid=True, **extra), status)
    response.vary.add("HX-Request")
    return response
