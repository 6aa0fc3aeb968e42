"""The organiser's side of sales: check-in at the door (once per code, live counts),
and orders (search, status filter, pages, CSV, detail, mark paid), with who may."""
import csv
import io
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select, update

from app.extensions import db
from app.models import AccessGrant, Order, OrderStatus, Role, RolePermission, Ticket, TicketStatus, User
from app.models.base import utcnow
from tests.conftest import csrf_token
from tests.test_concurrency import race
from tests.test_sales_concurrency import signed_in_client
from tests.test_tickets import buy, tickets_of_order

HTMX = {"HX-Request": "true"}


@pytest.fixture
def door(owner_client, make_event, make_ticket_type, app, make_user, sign_in, ctx):
    """Alice's event in Lisbon: Bob holds two free tickets, Carol one VIP paid later."""
    alice, alice_id, account_id = owner_client
    event_id = make_event(account_id=account_id, timezone="Europe/Lisbon", allow_pay_later=True)
    general = make_ticket_type(event_id, name="General admission")
    vip = make_ticket_type(event_id, name="VIP", price_cents=2000)
    make_user("bob@example.com", name="Bob Builder")
    make_user("carol@example.com", name="Carol Singer")
    bob_order = buy(sign_in("bob@example.com", app.test_client()), general, quantity=2)
    carol_order = buy(sign_in("carol@example.com", app.test_client()), vip, method="pay_later")
    return dict(client=alice, account_id=account_id, event_id=event_id, general=general, vip=vip,
                bob=tickets_of_order(bob_order), carol=tickets_of_order(carol_order)[0],
                token=csrf_token(alice, f"/manage/events/{event_id}/checkin"))


def check_in(door, code, htmx=True, event_id=None):
    event_id = event_id or door["event_id"]
    return door["client"].post(f"/manage/events/{event_id}/checkin", data={"code": code, "csrf_token": door["token"]},
                               headers=HTMX if htmx else {})


def text(response):
    return response.get_data(as_text=True)


def reload(ticket):
    db.session.expire_all()
    return db.session.get(Ticket, ticket.id)


# --- check-in ----------------------------------------------------------------------

def test_a_code_checks_in_once_and_the_second_scan_says_when_and_by_whom(door):
    ticket = door["bob"][0]
    first = check_in(door, f"  {ticket.code} ")
    assert first.status_code == 200
    assert "Checked in: Bob Builder, General admission" in text(first)
    assert first.headers["HX-Trigger"] == "checkin-changed"
    assert 'id="checkin"' in text(first) and "<html" not in text(first)
    assert 'value=""' not in text(first) and "autofocus" in text(first)  # an empty field, ready for the next
    admitted = reload(ticket)
    assert admitted.checked_in_by.email == "alice@example.com"
    assert utcnow() - admitted.checked_in_at < timedelta(minutes=1)

    second = check_in(door, ticket.code)
    assert second.status_code == 409 and "HX-Trigger" not in second.headers
    when = admitted.checked_in_at.astimezone(ZoneInfo("Europe/Lisbon"))
    assert (f"Already checked in at {when:%H:%M:%S} (Europe/Lisbon) on {when:%d %b} by Alice Example."
            in text(second))
    assert "Bob Builder, General admission" in text(second)
    assert reload(ticket).checked_in_at == admitted.checked_in_at  # the first time stays


@pytest.mark.parametrize("code, status, message", [
    ("no-such-code", 404, "No ticket of this event has that code."),
    ("", 422, "Type or scan a ticket code."),
    ("   ", 422, "Type or scan a ticket code."),
    ("x" * 65, 422, "Type or scan a ticket code."),
])
def test_bad_codes_are_refused_with_a_message(door, code, status, message):
    response = check_in(door, code)
    assert response.status_code == status and message in text(response)
    assert 'id="checkin"' in text(response)
    assert db.session.scalar(select(func.count()).select_from(Ticket).where(Ticket.checked_in_at.is_not(None))) == 0


def test_a_code_of_another_event_does_not_check_in_here(door, make_event, make_ticket_type, app, sign_in):
    other_event = make_event(account_id=door["account_id"], name="Other Night")
    other = tickets_of_order(buy(sign_in("bob@example.com", app.test_client()), make_ticket_type(other_event)))[0]
    response = check_in(door, other.code)
    assert response.status_code == 404 and "No ticket of this event has that code." in text(response)
    assert reload(other).checked_in_at is None
    assert check_in(door, other.code, event_id=other_event).status_code == 200  # at its own door it does


def test_a_cancelled_ticket_is_refused(door):
    ticket = door["bob"][1]
    db.session.execute(update(Ticket).where(Ticket.id == ticket.id).values(status=TicketStatus.VOID))
    db.session.commit()
    response = check_in(door, ticket.code)
    assert response.status_code == 409 and "This ticket was cancelled." in text(response)
    assert reload(ticket).checked_in_at is None


def test_a_pay_later_ticket_checks_in_with_payment_due_and_can_be_marked_paid_there(door):
    carol = door["carol"]
    response = check_in(door, carol.code)
    assert response.status_code == 200
    page = text(response)
    assert "Checked in: Carol Singer, VIP" in page and "Payment due: 20.00 EUR" in page
    action = f"/manage/events/{door['event_id']}/orders/{carol.order_id}/mark-paid"
    assert f'hx-post="{action}"' in page

    paid = door["client"].post(action, data={"csrf_token": door["token"]}, headers=HTMX)
    assert paid.status_code == 200 and f'id="order-payment-{carol.order_id}"' in text(paid)
    assert "badge-paid" in text(paid) and "Mark paid" not in text(paid)
    assert db.session.get(Order, carol.order_id).status == OrderStatus.PAID
    # Access comes with payment: Carol may now enter the rooms.
    assert db.session.scalar(select(AccessGrant.role_id).where(AccessGrant.source_ref == carol.order_id)) == "attendee"
    again = door["client"].post(action, data={"csrf_token": door["token"]}, headers=HTMX)
    assert again.status_code == 409 and "This order is not waiting for payment." in text(again)


def counts_of(response):
    """{ticket type: (checked in, sold)} from the counts table."""
    return {name: (int(inside), int(sold)) for name, inside, sold in re.findall(
        r'data-testid="checkin-count"><td>([^<]+)</td>\s*<td><strong>(\d+)</strong> / (\d+)', text(response))}


def test_counts_per_ticket_type_refresh_as_a_fragment(door):
    path = f"/manage/events/{door['event_id']}/checkin"
    fragment = door["client"].get(path, headers=HTMX)
    assert fragment.status_code == 200 and 'id="checkin-counts"' in text(fragment) and "<html" not in text(fragment)
    assert 'hx-trigger="every 5s, checkin-changed from:body"' in text(fragment)
    assert counts_of(fragment) == {"General admission": (0, 2), "VIP": (0, 1)}
    check_in(door, door["bob"][0].code)
    check_in(door, door["bob"][0].code)  # a second scan counts nobody twice
    check_in(door, door["carol"].code)
    db.session.execute(update(Ticket).where(Ticket.id == door["bob"][1].id).values(status=TicketStatus.VOID))
    db.session.commit()
    fragment = door["client"].get(path, headers=HTMX)
    assert counts_of(fragment) == {"General admission": (1, 1), "VIP": (1, 1)}
    assert re.search(r'data-testid="checkin-total"><th>All</th>\s*<th>2 / 2</th>', text(fragment))


def test_checkin_page_and_its_fragments(door):
    page = door["client"].get(f"/manage/events/{door['event_id']}/checkin")
    body = text(page)
    assert page.status_code == 200 and "<html" in body and "HX-Request" in page.headers["Vary"]
    assert 'id="checkin"' in body and 'id="checkin-counts"' in body and 'id="scan-start"' in body
    assert "/static/js/checkin.js" in body and "<script>" not in body  # CSP: no inline scripts
    assert 'aria-current="page">Check-in<' in body
    # Without htmx a typed code posts the form and gets the whole page with the answer.
    response = check_in(door, door["bob"][0].code, htmx=False)
    assert response.status_code == 200 and "<html" in text(response)
    assert "Checked in: Bob Builder, General admission" in text(response)


@pytest.mark.concurrency
def test_many_doors_scanning_one_code_admit_it_once(door, app):
    ticket = door["bob"][0]
    alice_id = db.session.scalar(select(User.id).where(User.email == "alice@example.com"))
    doors = [signed_in_client(app, alice_id) for _ in range(8)]
    tokens = [csrf_token(client, "/dashboard") for client in doors]
    path = f"/manage/events/{door['event_id']}/checkin"
    code = ticket.code  # read here: the threads have no app context for the test's session
    statuses = race([lambda c=c, t=t: c.post(path, data={"code": code, "csrf_token": t}).status_code
                     for c, t in zip(doors, tokens)])
    assert sorted(statuses) == [200] + [409] * 7
    assert reload(ticket).checked_in_at is not None


# --- orders ------------------------------------------------------------------------

def add_orders(event_id, count, status=OrderStatus.PAID, **fields):
    """Orders written straight to the database (the list does not care how they came)."""
    now = utcnow()
    for i in range(count):
        db.session.add(Order(number=fields.get("number", f"EV-T{i:05d}"), event_id=event_id, status=status,
                             payment_method="external", retailer="manual", total_cents=fields.get("total_cents", 500),
                             buyer_email=fields.get("buyer_email", f"buyer{i}@example.com"),
                             buyer_name=fields.get("buyer_name", f"Buyer {i}"),
                             created_at=now - timedelta(days=1, minutes=i)))
    db.session.commit()


def order_numbers(response):
    return re.findall(r'data-testid="order-row">\s*<td><a [^>]*>([^<]+)</a>', text(response))


def test_orders_list_newest_first_with_sales_counts(door):
    response = door["client"].get(f"/manage/events/{door['event_id']}/orders")
    assert response.status_code == 200 and "<html" in text(response)
    carol, bob = door["carol"].order, door["bob"][0].order
    assert order_numbers(response) == [carol.number, bob.number]
    page = text(response)
    assert 'aria-current="page">Orders<' in page
    assert re.search(r"<td>General admission</td>\s*<td>2 / 50</td>", page)
    assert re.search(r'badge-pending">pending</span></td><td>1</td>\s*<td>20.00 EUR</td>', page)
    assert re.search(r'badge-paid">paid</span></td><td>1</td>\s*<td>0.00 EUR</td>', page)


def test_orders_search_and_status_filter(door):
    path = f"/manage/events/{door['event_id']}/orders"
    client = door["client"]
    carol, bob = door["carol"].order, door["bob"][0].order
    assert order_numbers(client.get(path, query_string={"q": "CAROL@example"})) == [carol.number]
    assert order_numbers(client.get(path, query_string={"q": "bob build"})) == [bob.number]
    assert order_numbers(client.get(path, query_string={"q": bob.number.lower()})) == [bob.number]
    assert order_numbers(client.get(path, query_string={"status": "pending"})) == [carol.number]
    assert order_numbers(client.get(path, query_string={"status": "paid", "q": "carol"})) == []
    assert order_numbers(client.get(path, query_string={"q": "100%_"})) == []  # LIKE wildcards are literal
    fragment = client.get(path, query_string={"q": "bob"}, headers=HTMX)
    assert 'id="orders"' in text(fragment) and "<html" not in text(fragment)
    assert "HX-Request" in fragment.headers["Vary"]


@pytest.mark.parametrize("query, message", [
    ({"status": "lost"}, "There is no such order status."),
    ({"q": "x" * 101}, "Search for at most 100 characters."),
])
def test_bad_order_filters_are_refused_with_a_message(door, query, message):
    path = f"/manage/events/{door['event_id']}/orders"
    for headers in ({}, HTMX):
        response = door["client"].get(path, query_string=query, headers=headers)
        assert response.status_code == 422 and message in text(response)
    assert door["client"].get(path + ".csv", query_string=query).status_code == 422


def test_orders_come_in_pages_of_25(door):
    add_orders(door["event_id"], 30)
    path = f"/manage/events/{door['event_id']}/orders"
    first = door["client"].get(path)
    assert len(order_numbers(first)) == 25 and "1–25 of 32" in text(first)
    last = door["client"].get(path, query_string={"page": 2})
    assert len(order_numbers(last)) == 7 and "26–32 of 32" in text(last)
    assert set(order_numbers(first)).isdisjoint(order_numbers(last))
    assert order_numbers(door["client"].get(path, query_string={"page": 99})) == order_numbers(last)
    assert order_numbers(door["client"].get(path, query_string={"page": "two"})) == order_numbers(first)


def test_orders_csv_has_the_filtered_rows_and_defuses_formulas(door):
    event_id = door["event_id"]
    add_orders(event_id, 1, number="EV-FORMULA", buyer_name='=HYPERLINK("http://evil")', buyer_email="@evil.example",
               total_cents=1234)
    response = door["client"].get(f"/manage/events/{event_id}/orders.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"] and "-orders.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(text(response))))
    assert rows[0][:3] == ["Order", "Status", "Payment"]
    by_number = {row[0]: row for row in rows[1:]}
    assert set(by_number) == {door["carol"].order.number, door["bob"][0].order.number, "EV-FORMULA"}
    formula = by_number["EV-FORMULA"]
    assert formula[3] == "'=HYPERLINK(\"http://evil\")" and formula[4] == "'@evil.example" and formula[6] == "12.34"
    assert by_number[door["bob"][0].order.number][5] == "2"  # tickets in the order
    pending = door["client"].get(f"/manage/events/{event_id}/orders.csv", query_string={"status": "pending"})
    assert [row[0] for row in list(csv.reader(io.StringIO(text(pending))))[1:]] == [door["carol"].order.number]


def test_order_detail_lists_items_and_tickets(door):
    ticket = door["bob"][0]
    check_in(door, ticket.code)
    response = door["client"].get(f"/manage/events/{door['event_id']}/orders/{ticket.order_id}")
    page = text(response)
    assert response.status_code == 200 and ticket.order.number in page
    assert page.count('data-testid="order-item"') == 1 and page.count('data-testid="order-ticket"') == 2
    assert "Bob Builder" in page and "by Alice Example" in page and "not yet" in page
    assert ticket.code not in page  # the organiser does not need the codes, and they get people in
    assert 'aria-current="page">Orders<' in page


def test_mark_paid_without_htmx_redirects_and_refuses_twice(door):
    order_id = door["carol"].order_id
    path = f"/manage/events/{door['event_id']}/orders/{order_id}/mark-paid"
    detail = text(door["client"].get(f"/manage/events/{door['event_id']}/orders/{order_id}"))
    assert "Mark paid" in detail and "Payment due: 20.00 EUR" in detail
    response = door["client"].post(path, data={"csrf_token": door["token"]})
    assert response.status_code == 302 and response.location.endswith(f"/orders/{order_id}")
    order = db.session.get(Order, order_id)
    assert order.status == OrderStatus.PAID and order.marked_paid_by_id is not None
    assert "is marked paid" in text(door["client"].get(response.location))
    again = door["client"].post(path, data={"csrf_token": door["token"]})
    assert again.status_code == 409 and "This order is not waiting for payment." in text(again)


def test_an_order_of_another_event_is_404(door, make_event):
    other_event = make_event(account_id=door["account_id"])
    order_id = door["carol"].order_id
    assert door["client"].get(f"/manage/events/{other_event}/orders/{order_id}").status_code == 404
    response = door["client"].post(f"/manage/events/{other_event}/orders/{order_id}/mark-paid",
                                   data={"csrf_token": door["token"]})
    assert response.status_code == 404
    assert db.session.get(Order, order_id).status == OrderStatus.PENDING
    assert door["client"].get(f"/manage/events/{door['event_id']}/orders/nope").status_code == 404


# --- who may ------------------------------------------------------------------------

@pytest.fixture
def box_office_role(ctx):
    """A custom role that sees orders but may not change the event (roles are seeded
    data, kept between tests: take it away again)."""
    db.session.add(Role(id="box_office", name="Box office", rank=35))
    db.session.add(RolePermission(role_id="box_office", permission_key="orders.view"))
    db.session.commit()
    yield "box_office"
    db.session.rollback()
    db.session.execute(delete(AccessGrant).where(AccessGrant.role_id == "box_office"))
    db.session.execute(delete(RolePermission).where(RolePermission.role_id == "box_office"))
    db.session.execute(delete(Role).where(Role.id == "box_office"))
    db.session.commit()


@pytest.fixture
def team_member(door, app, make_user, sign_in):
    def make(role_id, email):
        user_id = make_user(email)
        db.session.add(AccessGrant(event_id=door["event_id"], user_id=user_id, role_id=role_id, source="manual"))
        db.session.commit()
        client = sign_in(email, app.test_client())
        return client, csrf_token(client, "/dashboard")
    return make


def guarded(door):
    event_id, order_id = door["event_id"], door["carol"].order_id
    base = f"/manage/events/{event_id}"
    return {
        "checkin": ("get", f"{base}/checkin", "event.manage"),
        "check_in_code": ("post", f"{base}/checkin", "event.manage"),
        "orders": ("get", f"{base}/orders", "orders.view"),
        "orders_csv": ("get", f"{base}/orders.csv", "orders.view"),
        "order_detail": ("get", f"{base}/orders/{order_id}", "orders.view"),
        "mark_order_paid": ("post", f"{base}/orders/{order_id}/mark-paid", "event.manage"),
    }


def request_as(client, token, method, path):
    if method == "post":
        response = client.post(path, data={"csrf_token": token, "code": "whatever"})
    else:
        response = client.get(path)
    response.close()  # a streamed CSV keeps its request context until closed
    return response


def test_a_host_without_the_permissions_gets_403(door, team_member):
    host, token = team_member("host", "hank@example.com")
    for name, (method, path, _) in guarded(door).items():
        response = request_as(host, token, method, path)
        assert response.status_code == 403, name


def test_a_role_with_orders_view_sees_orders_but_cannot_mark_paid_or_check_in(door, team_member, box_office_role):
    clerk, token = team_member(box_office_role, "olga@example.com")
    for name, (method, path, permission) in guarded(door).items():
        response = request_as(clerk, token, method, path)
        assert response.status_code == (200 if permission == "orders.view" else 403), name
    detail = text(clerk.get(guarded(door)["order_detail"][1]))
    assert "Payment due: 20.00 EUR" in detail and "Mark paid" not in detail
    assert db.session.get(Order, door["carol"].order_id).status == OrderStatus.PENDING


def test_strangers_get_404_and_change_nothing(door, app, make_user, sign_in):
    make_user("mallory@example.com")
    mallory = sign_in("mallory@example.com", app.test_client())
    token = csrf_token(mallory, "/dashboard")
    for name, (method, path, _) in guarded(door).items():
        assert request_as(mallory, token, method, path).status_code == 404, name
    response = mallory.post(f"/manage/events/{door['event_id']}/checkin",
                            data={"csrf_token": token, "code": door["bob"][0].code})
    assert response.status_code == 404 and reload(door["bob"][0]).checked_in_at is None


def test_a_ticket_holder_is_no_door_staff(door, app, sign_in):
    bob = sign_in("bob@example.com", app.test_client())  # attendee of the event: on it, not on its team's side
    token = csrf_token(bob, "/dashboard")
    response = bob.post(f"/manage/events/{door['event_id']}/checkin", data={"csrf_token": token,
                                                                          "code": door["bob"][0].code})
    assert response.status_code == 403 and reload(door["bob"][0]).checked_in_at is None
