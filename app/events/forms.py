"""The catalog's filters: a GET form read from the query string (no CSRF: it changes nothing)."""
from wtforms import BooleanField, DateField, Form, SearchField, SelectChoice, SelectField
from wtforms.validators import Length, Optional, ValidationError

from app.events.services import CatalogFilters

MAX_SEARCH_LENGTH = 200


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class CatalogFilterForm(Form):
    q = SearchField("Search", filters=[_strip], validators=[
        Length(max=MAX_SEARCH_LENGTH, message=f"Search for at most {MAX_SEARCH_LENGTH} characters.")])
    starts_from = DateField("From", name="from", validators=[Optional()])
    starts_until = DateField("To", name="to", validators=[Optional()])
    price = SelectField("Price", default="", choices=[
        SelectChoice("", "Any price"), SelectChoice("free", "Free"), SelectChoice("paid", "Paid")])
    available = BooleanField("Tickets available", false_values=("", "0", "false", "off", "no"))

    def validate_starts_until(self, field):
        if field.data and self.starts_from.data and field.data < self.starts_from.data:
            raise ValidationError("The end date is before the start date.")

    def filters(self):
        return CatalogFilters(text=self.q.data or "", starts_from=self.starts_from.data,
                              starts_until=self.starts_until.data, price=self.price.data or None,
                              available_only=self.available.data)

    def query_args(self):
        """The filters as they go in a page link (only the ones set)."""
        args = {"q": self.q.data, "price": self.price.data, "available": "1" if self.available.data else None,
                "from": self.starts_from.data and self.starts_from.data.isoformat(),
                "to": self.starts_until.data and self.starts_until.data.isoformat()}
        return {name: value for name, value in args.items() if value}
