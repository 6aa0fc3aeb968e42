"""The one place that decides between a full page and an htmx fragment."""
from flask import make_response, redirect, render_template, request


def is_htmx_request():
    """A swap request: HX-Request set, but not a boosted navigation or a history restore."""
    return (request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-Boosted") != "true"
            and request.headers.get("HX-History-Restore-Request") != "true")


def render_page(page_template, fragment_template, status=200, **context):
    """Render the fragment for htmx, else the page (which includes the same fragment)."""
    template = fragment_template if is_htmx_request() else page_template
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


def redirect_to(url):
    """Redirect that also works for an htmx request (a plain 302 would be swapped in)."""
    if request.headers.get("HX-Request") == "true":
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)
