"""Organiser pages for events, rooms and ticket types."""
from flask import render_template, request
from flask_login import current_user, login_required

from app.manage import bp, services
from app.models import EventStatus


def _page_arg():
    try:
        return max(int(request.args.get("page", 1)), 1)
    except ValueError:
        return 1


@bp.get("")
@login_required
def dashboard():
    account = current_user.current_account
    status = request.args.get("status") if request.args.get("status") in set(EventStatus) else None
    query = (request.args.get("q") or "").strip()[:100]
    page = _page_arg()
    rows, total = services.dashboard_events(account.id, status, query, page) if account else ([], 0)
    return render_template("manage/dashboard.html", account=account, rows=rows, total=total, page=page,
                           page_size=services.PAGE_SIZE, status=status, query=query,
                           counts=services.status_counts(account.id) if account else {})
