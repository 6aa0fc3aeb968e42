"""Who gets which LiveKit grants in a room. No vendor code: the route mints the token.

The permission engine decides; nothing here compares role names. publish_allowed()
is the one place that says who may send audio and video, so the stage flow can
widen it to "whoever is on stage" without touching the token route.
"""
from dataclasses import dataclass

from sqlalchemy import or_, select

from app.access.services import can, owns_account
from app.errors import Forbidden
from app.extensions import db
from app.models import AccessGrant, Role
from app.rooms.stage import may_publish_via_stage


@dataclass(frozen=True)
class RoomGrants:
    can_subscribe: bool
    can_publish: bool
    can_publish_data: bool
    hidden: bool
    recorder: bool


def publish_allowed(user, event, room):
    """May this user send audio and video in the room?

    Those whose role publishes, and, through the stage flow, whoever is on this
    room's stage or is being vetted (camera check) when this is the backstage room.
    """
    return can(user, "room.publish", event, room.id) or may_publish_via_stage(user, room)


def grants_for(user, room, *, hidden=False):
    """The grants of the user's token for the room (they may already enter it).

    Hidden joins (watching or recording unseen) are for those who control
    recording, only when they ask; a hidden participant sends nothing.
    """
    event = room.event
    if hidden:
        if not can(user, "recording.control", event, room.id):
            raise Forbidden("Only producers can join a room unseen.")
        return RoomGrants(can_subscribe=True, can_publish=False, can_publish_data=False,
                          hidden=True, recorder=True)
    publish = publish_allowed(user, event, room)
    # Data messages ride the same permission: chat and presence go through our own socket.
    return RoomGrants(can_subscribe=True, can_publish=publish, can_publish_data=publish,
                      hidden=False, recorder=False)


def highest_role(user, event, room):
    """The user's top role on the event (or this room): a Role, or None."""
    if owns_account(user, event.account_id):
        return db.session.scalar(select(Role).order_by(Role.rank.desc()).limit(1))
    return db.session.scalar(
        select(Role).join(AccessGrant, AccessGrant.role_id == Role.id)
        .where(AccessGrant.event_id == event.id, AccessGrant.user_id == user.id,
               or_(AccessGrant.room_id.is_(None), AccessGrant.room_id == room.id))
        .order_by(Role.rank.desc()).limit(1))


def participant_metadata(user, event, room):
    """What other participants' clients see about this person, beside the name."""
    role = highest_role(user, event, room)
    # For display only: clients never decide anything from the role.
    return {"user_id": user.id, "role": role.name if role else None, "role_id": role.id if role else None}
