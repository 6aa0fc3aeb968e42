"""The one way organiser routes check rights."""
from functools import wraps

from flask_login import current_user, login_required

from app.access import services


def event_permission(permission):
    """The view gets `event` in place of `event_id`, once the user may do `permission`
    on it: 404 for strangers, 403 for team members without the right."""
    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(event_id, **kwargs):
            event = services.event_for(current_user, event_id, permission)
            return view(event=event, **kwargs)
        return wrapped
    return decorator
