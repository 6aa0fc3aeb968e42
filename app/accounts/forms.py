from datetime import date

from flask_wtf import FlaskForm
from wtforms import DateField, EmailField, FileField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional, ValidationError


class ProfileForm(FlaskForm):
    name = StringField("Full name", validators=[Optional(), Length(max=120)])
    display_name = StringField("Display name", validators=[Optional(), Length(max=60)],
                               description="What others see in rooms and chat.")
    pronouns = StringField("Pronouns", validators=[Optional(), Length(max=40)])
    location = StringField("Location", validators=[Optional(), Length(max=120)])
    birthdate = DateField("Birthdate", validators=[Optional()])

    def validate_birthdate(self, field):
        if field.data and not (date(1900, 1, 1) <= field.data <= date.today()):
            raise ValidationError("Enter a birthdate between 1900 and today.")

    def profile_fields(self):
        fields = {key: (getattr(self, key).data or "").strip() or None
                  for key in ("name", "display_name", "pronouns", "location")}
        return {**fields, "birthdate": self.birthdate.data}


class AvatarForm(FlaskForm):
    avatar = FileField("Avatar")


class AccountForm(FlaskForm):
    name = StringField("Organisation name", validators=[
        DataRequired("Give the organisation a name."), Length(min=2, max=120)])


class OwnerForm(FlaskForm):
    email = EmailField("E-mail of the new owner", validators=[
        DataRequired("Enter an e-mail address."), Length(max=254), Email("That is not an e-mail address.")])
