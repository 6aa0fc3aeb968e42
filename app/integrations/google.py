"""Google sign-in (OpenID Connect through Authlib), enabled by GOOGLE_CLIENT_ID."""
import logging

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import current_app

log = logging.getLogger(__name__)
oauth = OAuth()


class GoogleSignInError(Exception):
    pass


def init_app(app):
    oauth.init_app(app)
    if app.config.get("GOOGLE_CLIENT_ID"):
        oauth.register(
            "google",
            client_id=app.config["GOOGLE_CLIENT_ID"],
            client_secret=app.config["GOOGLE_CLIENT_SECRET"],
            server_metadata_url=app.config["GOOGLE_DISCOVERY_URL"],
            client_kwargs={"scope": "openid email profile"},
            overwrite=True,
        )


def is_enabled():
    return bool(current_app.config.get("GOOGLE_CLIENT_ID"))


def authorize_redirect(redirect_uri):
    return oauth.google.authorize_redirect(redirect_uri)


def fetch_identity():
    """Finish the redirect: returns the verified id_token claims (sub, email, name...)."""
    try:
        token = oauth.google.authorize_access_token()
    except (OAuthError, ValueError) as exc:
        log.info("Google sign-in failed: %s", exc.__class__.__name__)
        raise GoogleSignInError("Google sign-in did not complete. Please try again.") from None
    claims = token.get("userinfo")
    if not claims or not claims.get("sub"):
        raise GoogleSignInError("Google did not say who you are. Please try again.")
    return claims
