"""Page numbers from the query string."""
from flask import request


def page_number():
    """?page=N as a positive int; anything else is page 1."""
    try:
        return max(int(request.args.get("page", 1)), 1)
    except ValueError:
        return 1
