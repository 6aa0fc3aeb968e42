"""Outgoing e-mail: SMTP when MAIL_SERVER is set, else the console adapter.

Only the console adapter writes message bodies (which may hold sign-in codes) to
the log; it exists for development machines without a mail server.
"""
import logging
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

from flask import current_app

log = logging.getLogger(__name__)


class ConsoleMailer:
    def send(self, message: EmailMessage):
        log.info("e-mail (console adapter) to %s: %s\n%s", message["To"], message["Subject"],
                 message.get_content())


class SmtpMailer:
    def __init__(self, server, port, username=None, password=None, use_tls=True, use_ssl=False):
        self.server, self.port = server, port
        self.username, self.password = username, password
        self.use_tls, self.use_ssl = use_tls, use_ssl

    def send(self, message: EmailMessage):
        smtp_class = smtplib.SMTP_SSL if self.use_ssl else smtplib.SMTP
        with smtp_class(self.server, self.port, timeout=20) as smtp:
            if self.use_tls and not self.use_ssl:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)
        log.info("e-mail sent to %s", message["To"])


def init_app(app):
    config = app.config
    if config.get("MAIL_SERVER"):
        mailer = SmtpMailer(config["MAIL_SERVER"], config["MAIL_PORT"], config["MAIL_USERNAME"],
                            config["MAIL_PASSWORD"], config["MAIL_USE_TLS"], config["MAIL_USE_SSL"])
    else:
        mailer = ConsoleMailer()
    app.extensions["mailer"] = mailer


def build_message(to, subject, text, html=None):
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_DEFAULT_SENDER"]
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="eventuall")
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def send(to, subject, text, html=None):
    current_app.extensions["mailer"].send(build_message(to, subject, text, html))
