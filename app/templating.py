"""Template helpers: the nav's accounts, dates, avatars."""
from flask import url_for
from flask_login import current_user


def register(app):
    @app.context_processor
    def nav_context():
        def nav_accounts():  # asked by base.html's account menu: fragments never query it
            if not current_user.is_authenticated:
                return []
            from app.accounts.services import accounts_of

            return accounts_of(current_user)
        return {"nav_accounts": nav_accounts}

    @app.template_filter("datetime")
    def format_datetime(value, fmt="%a %d %b %Y, %H:%M UTC"):
        return value.strftime(fmt) if value else ""

    @app.template_global()
    def avatar_url(user):
        return url_for("media.file", key=user.avatar_key) if user.avatar_key else None
