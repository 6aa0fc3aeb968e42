from flask_wtf import FlaskForm
from wtforms import EmailField, StringField, TelField


class EmailSignInForm(FlaskForm):
    email = EmailField("E-mail")


class PhoneSignInForm(FlaskForm):
    phone = TelField("Mobile number")


class CodeForm(FlaskForm):
    code = StringField("6-digit code")
