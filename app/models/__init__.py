"""All models, one module per domain."""
from app.models.access import (AccessGrant, GrantSource, Invitation, PendingProfile, Permission, Role,
                               RoleInheritance, RolePermission, participants_view)
from app.models.accounts import Account, AccountKind, AccountOwner
from app.models.events import Event, EventStatus, Room, RoomKind, TicketType, TicketTypeRoom
from app.models.live import (SignInEvent, StageAppearance, StageEntryStatus, StageEvent, StageQueueEntry,
                             VetMessage)
from app.models.orders import Order, OrderItem, OrderStatus, PaymentMethod, Retailer
from app.models.sales import Hold, HoldStatus, Ticket, TicketStatus, WaitlistEntry, WaitlistStatus
from app.models.users import CodeChannel, LoginCode, User, UserProvider

__all__ = [
    "AccessGrant", "Account", "AccountKind", "AccountOwner", "CodeChannel", "Event", "EventStatus",
    "GrantSource", "Invitation", "LoginCode", "PendingProfile", "Permission", "Role", "RoleInheritance",
    "RolePermission", "Room", "RoomKind", "SignInEvent", "StageAppearance", "StageEntryStatus", "StageEvent",
    "StageQueueEntry", "VetMessage", "TicketType", "TicketTypeRoom", "User",
    "UserProvider", "participants_view",
    "Hold", "HoldStatus", "Order", "OrderItem", "OrderStatus", "PaymentMethod", "Retailer", "Ticket",
    "TicketStatus", "WaitlistEntry", "WaitlistStatus",
]
