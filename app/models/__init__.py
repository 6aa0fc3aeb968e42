"""All models, one module per domain."""
from app.models.accounts import Account, AccountKind, AccountOwner
from app.models.events import Event, EventStatus
from app.models.live import SignInEvent
from app.models.users import CodeChannel, LoginCode, User, UserProvider

__all__ = [
    "Account", "AccountKind", "AccountOwner", "CodeChannel", "Event", "EventStatus",
    "LoginCode", "SignInEvent", "User", "UserProvider",
]
