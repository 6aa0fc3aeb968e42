"""Google sign-in (OpenID Connect through Authlib), enabled by GOOGLE_CLIENT_ID."""
import logging

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import current_app
from joserfc.errors import JoseError

log = logging.getLogger(__name__)


class GoogleSignInError(Exception):
    pass


def init_app(app):
    # One registry per app: Authlib caches clients by name, so a shared registry would
    # hand every later app in the process the first app's Google settings.
    oauth = OAuth(app)
    if app.config.get("GOOGLE_CLIENT_ID"):
        oauth.register(
            "google",
            client_id=app.config["GOOGLE_CLIENT_ID"],
            client_secret=app.config["GOOGLE_CLIENT_SECRET"],
            server_metadata_url=app.config["GOOGLE_DISCOVERY_URL"],
            client_kwargs={"scope": "openid email profile"},
            overwrite=True,
        )


def _client():
    return current_app.extensions["authlib.integrations.flask_client"].google


def is_enabled():
    return bool(current_app.config.get("GOOGLE_CLIENT_ID"))


UNREACHABLE = "Google sign-in is not answering right now. Please try again, or use an e-mail code."


def authorize_redirect(redirect_uri):
    try:
        return _client().authorize_redirect(redirect_uri)
    except requests.RequestException as exc:  # discovery document unreachable
        log.warning("Google discovery failed: %s", exc.__class__.__name__)
        raise GoogleSignInError(UNREACHABLE) from None


def fetch_identity():
    """Finish the redirect: returns the verified id_token claims (sub, email, name...)."""
    # JoseError: an id_token with a bad signature or claims (Authlib checks it with joserfc).
    try:
        token = _client().authorize_access_token()
    except (OAuthError, JoseError, ValueError) as exc:
        log.info("Google sign-in failed: %s", exc.__class__.__name__)
        raise GoogleSignInError("Google sign-in did not complete. Please try again.") from None
    except requests.RequestException as exc:  # token endpoint unreachable
        log.warning("Google token exchange failed: %s", exc.__class__.__name__)
        raise GoogleSignInError(UNREACHABLE) from None
    claims = token.get("userinfo")
    if not claims or not claims.get("sub"):
        raise GoogleSignInError("Google did not say who you are. Please try again.")
    return claims
