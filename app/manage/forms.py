"""Organiser forms. Organisers type dates in the event's time zone; the forms
hand the services aware UTC datetimes and cents."""
from datetime import UTC
from decimal import Decimal
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from flask_wtf import FlaskForm
from wtforms import (BooleanField, DateTimeLocalField, DecimalField, IntegerField, SelectChoice, SelectField,
                     SelectMultipleField, StringField, TextAreaField)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, Regexp, ValidationError

from app.models import RoomKind
from app.models.events import DEFAULT_STAGE_SLOTS

COMMON_TIMEZONES = [
    "UTC", "Europe/London", "Europe/Dublin", "Europe/Lisbon", "Europe/Paris", "Europe/Brussels",
    "Europe/Amsterdam", "Europe/Berlin", "Europe/Madrid", "Europe/Rome", "Europe/Zurich", "Europe/Vienna",
    "Europe/Stockholm", "Europe/Oslo", "Europe/Copenhagen", "Europe/Warsaw", "Europe/Prague",
    "Europe/Athens", "Europe/Helsinki", "Europe/Istanbul", "Europe/Kyiv", "Africa/Lagos", "Africa/Cairo",
    "Africa/Nairobi", "Africa/Johannesburg", "Asia/Dubai", "Asia/Karachi", "Asia/Kolkata", "Asia/Bangkok",
    "Asia/Jakarta", "Asia/Singapore", "Asia/Hong_Kong", "Asia/Shanghai", "Asia/Seoul", "Asia/Tokyo",
    "Australia/Perth", "Australia/Adelaide", "Australia/Brisbane", "Australia/Sydney", "Pacific/Auckland",
    "Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Vancouver", "America/Denver",
    "America/Phoenix", "America/Chicago", "America/Mexico_City", "America/New_York", "America/Toronto",
    "America/Bogota", "America/Lima", "America/Halifax", "America/Santiago", "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
]
# How datetime-local inputs send values (seconds only when the browser adds them).
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
MAX_PRICE = Decimal("1000000")
MAX_COUNT = 1_000_000


@cache
def known_timezones():
    return frozenset(available_timezones())


def to_utc(local, zone):
    """A naive datetime typed in `zone` -> aware UTC."""
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC) if local else None


def to_local(value, zone):
    """An aware datetime -> naive wall-clock time in `zone`, for a datetime-local input."""
    return value.astimezone(ZoneInfo(zone)).replace(tzinfo=None) if value else None


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _strip_lower(value):
    return value.strip().lower() if isinstance(value, str) else value


def _strip_upper(value):
    return value.strip().upper() if isinstance(value, str) else value


def reasonable_year(form, field):
    # Far years overflow when shifted to UTC; nobody runs an event in 9999.
    if field.data and not 2000 <= field.data.year <= 2100:
        raise ValidationError("Enter a date between the years 2000 and 2100.")


def between(low, high, message):
    """Range check that stays quiet when the value did not parse: WTForms said so already."""
    def check(form, field):
        value = field.data
        if value is None:
            return
        # NaN and Infinity parse as Decimals, and NaN cannot even be compared.
        if (isinstance(value, Decimal) and not value.is_finite()) or not low <= value <= high:
            raise ValidationError(message)
    return check


def whole_cents(form, field):
    if field.data is not None and (field.data * 100) % 1:
        raise ValidationError("Use at most two decimals.")


def local_datetime(label, *validators):
    return DateTimeLocalField(label, format=DATETIME_FORMATS, validators=[*validators, reasonable_year])


class EventForm(FlaskForm):
    name = StringField("Name", filters=[_strip], validators=[
        DataRequired("Give the event a name."), Length(max=200)])
    slug = StringField("Address", filters=[_strip_lower], validators=[
        Optional(), Length(max=80),
        Regexp(SLUG_PATTERN, message="Use lowercase letters, digits and single hyphens only.")],
        description="Lowercase letters, digits and hyphens. Leave blank to make one from the name.")
    description = TextAreaField("Description", filters=[_strip], validators=[Optional(), Length(max=10_000)])
    timezone = SelectField("Time zone", default="UTC", validate_choice=False,
                           description="Start and end are in this time zone.")
    starts_at = local_datetime("Starts", InputRequired("Enter when the event starts."))
    ends_at = local_datetime("Ends", InputRequired("Enter when the event ends."))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        zones = list(COMMON_TIMEZONES)
        if self.timezone.data and self.timezone.data not in zones and self.timezone.data in known_timezones():
            zones.append(self.timezone.data)  # an event set up elsewhere keeps its zone in the list
        self.timezone.choices = [SelectChoice(zone, zone.replace("_", " ")) for zone in zones]

    @classmethod
    def for_event(cls, event):
        return cls(formdata=None, name=event.name, slug=event.slug, description=event.description,
                   timezone=event.timezone, starts_at=to_local(event.starts_at, event.timezone),
                   ends_at=to_local(event.ends_at, event.timezone))

    def validate_timezone(self, field):
        if field.data not in known_timezones():
            raise ValidationError("Choose a time zone from the list.")

    def event_fields(self):
        zone = self.timezone.data
        return {"name": self.name.data, "slug": self.slug.data or None, "description": self.description.data or "",
                "timezone": zone, "starts_at": to_utc(self.starts_at.data, zone),
                "ends_at": to_utc(self.ends_at.data, zone)}


class RoomForm(FlaskForm):
    name = StringField("Name", filters=[_strip], validators=[DataRequired("Give the room a name."), Length(max=80)])
    capacity = IntegerField("Capacity", validators=[
        Optional(), between(1, MAX_COUNT, "Capacity is a whole number of at least 1 (or leave it blank).")],
        description="Blank for no limit.")
    stage_slots = IntegerField("Stage places", default=DEFAULT_STAGE_SLOTS, validators=[
        Optional(), between(1, 50, "Stage places is a whole number from 1 to 50.")],
        description="How many people hosts can bring on stage at once.")

    def room_fields(self):
        # Blank keeps what the room has (a new room: the default).
        return {"name": self.name.data, "capacity": self.capacity.data,
                "stage_slots": self.stage_slots.data or None}


class NewRoomForm(RoomForm):
    kind = SelectField("Kind", default=RoomKind.BREAKOUT, choices=[
        SelectChoice(RoomKind.BREAKOUT.value, "Breakout"), SelectChoice(RoomKind.BACKSTAGE.value, "Backstage"),
        SelectChoice(RoomKind.MAIN.value, "Main room")])

    def room_fields(self):
        return {**super().room_fields(), "kind": self.kind.data}


class TicketTypeForm(FlaskForm):
    name = StringField("Name", filters=[_strip], validators=[
        DataRequired("Give the ticket type a name."), Length(max=120)])
    description = TextAreaField("Description", filters=[_strip], validators=[Optional(), Length(max=5000)])
    price = DecimalField("Price", places=2, default=Decimal("0"), validators=[
        InputRequired("Enter a price (0 for free)."),
        between(Decimal("0"), MAX_PRICE, "The price is between 0 and 1,000,000."), whole_cents])
    currency = StringField("Currency", default="EUR", filters=[_strip_upper], validators=[
        DataRequired("Enter a currency."), Regexp(r"^[A-Z]{3}$", message="Use a three-letter code such as EUR.")])
    capacity = IntegerField("Capacity", validators=[
        InputRequired("Enter how many tickets there are."),
        between(0, MAX_COUNT, "Capacity is a whole number between 0 and 1,000,000.")])
    sales_starts_at = local_datetime("Sales start", Optional())
    sales_ends_at = local_datetime("Sales end", Optional())
    max_per_order = IntegerField("At most per order", default=10, validators=[
        InputRequired("Enter how many tickets one order may hold."),
        between(1, 100, "Allow between 1 and 100 tickets per order.")])
    is_upgrade = BooleanField("Upgrade", description="Bought on top of another ticket to this event.")
    sku = StringField("SKU", filters=[_strip], validators=[Optional(), Length(max=64)],
                      description="The retailer's product code (Shopify, Eventbrite) that maps to this ticket type.")
    rooms = SelectMultipleField("Rooms it lets people into", validators=[
        DataRequired("Choose at least one room.")])

    def __init__(self, event, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.event = event
        self.rooms.choices = [SelectChoice(room.id, room.name) for room in event.rooms]

    @classmethod
    def for_new(cls, event):
        main = event.main_room
        return cls(event, formdata=None, rooms=[main.id] if main else [])

    @classmethod
    def for_ticket_type(cls, ticket_type):
        event = ticket_type.event
        return cls(event, formdata=None, name=ticket_type.name, description=ticket_type.description,
                   price=Decimal(ticket_type.price_cents) / 100, currency=ticket_type.currency,
                   capacity=ticket_type.capacity, max_per_order=ticket_type.max_per_order,
                   sales_starts_at=to_local(ticket_type.sales_starts_at, event.timezone),
                   sales_ends_at=to_local(ticket_type.sales_ends_at, event.timezone),
                   is_upgrade=ticket_type.is_upgrade, sku=ticket_type.sku,
                   rooms=[room.id for room in ticket_type.rooms])

    def ticket_type_fields(self):
        zone = self.event.timezone
        return {"name": self.name.data, "description": self.description.data or "",
                "price_cents": int(self.price.data * 100), "currency": self.currency.data,
                "capacity": self.capacity.data, "max_per_order": self.max_per_order.data,
                "sales_starts_at": to_utc(self.sales_starts_at.data, zone),
                "sales_ends_at": to_utc(self.sales_ends_at.data, zone),
                "is_upgrade": self.is_upgrade.data, "sku": self.sku.data or None, "room_ids": self.rooms.data}
