"""A small, real OpenID Connect provider on 127.0.0.1, standing in for Google.

It runs the authorization-code flow the way Google does: a discovery document,
/authorize sending the browser back with a one-time code, /token answering with
an RS256 id_token, /jwks and /userinfo. It keeps every request it receives so
tests can check what our app sent, and can be told to misbehave (refuse, forge).
"""
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.fakes.server import FakeService

KEY_ID = "fake-oidc-key"


def new_signing_key():
    """An RSA key carrying the provider's key id: a forger would copy the kid too."""
    return RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig", "alg": "RS256"})


@dataclass
class Seen:
    """One request the provider received."""
    method: str
    path: str
    args: dict
    form: dict
    headers: dict
    # "client_secret_basic" / "client_secret_post" when it carried our client's right
    # credentials, else None.
    client_auth: str | None = None


class OidcProvider(FakeService):
    def __init__(self, client_id, client_secret, redirect_uri):
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri  # the only one registered, as in Google's console
        self.key = new_signing_key()
        # What the next sign-ins get; tests set these before driving the flow.
        self.next_identity = None        # {"sub", "email", "email_verified", "name"}
        self.authorize_error = None      # e.g. "access_denied": the user said no
        self.signing_key = self.key      # another key forges the id_token signature
        self.id_token_audience = client_id
        self.requests = []
        self._grants = {}                # one-time code -> what /authorize was asked
        self._access_tokens = {}         # access token -> identity, for /userinfo
        self._lock = threading.Lock()
        self._serve(self._build_app())
        self.discovery_url = self.url + "/.well-known/openid-configuration"

    def seen(self, path):
        return [r for r in self.requests if r.path == path]

    def _client_auth(self):
        basic = request.authorization
        if basic is not None and basic.type == "basic":
            right = (basic.username, basic.password) == (self.client_id, self.client_secret)
            return "client_secret_basic" if right else None
        posted = (request.form.get("client_id"), request.form.get("client_secret"))
        return "client_secret_post" if posted == (self.client_id, self.client_secret) else None

    def _id_token(self, grant):
        now = int(time.time())
        claims = {**grant["identity"], "iss": self.url, "aud": self.id_token_audience,
                  "iat": now, "exp": now + 300}
        if grant["nonce"]:
            claims["nonce"] = grant["nonce"]
        return jwt.encode({"alg": "RS256", "kid": self.signing_key.kid}, claims, self.signing_key)

    def _build_app(self):
        app = Flask(__name__)

        @app.before_request
        def record():
            with self._lock:
                self.requests.append(Seen(request.method, request.path, request.args.to_dict(),
                                          request.form.to_dict(), dict(request.headers),
                                          self._client_auth()))

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(
                issuer=self.url,
                authorization_endpoint=self.url + "/authorize",
                token_endpoint=self.url + "/token",
                jwks_uri=self.url + "/jwks",
                userinfo_endpoint=self.url + "/userinfo",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"],
                token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
                scopes_supported=["openid", "email", "profile"],
            )

        @app.get("/authorize")
        def authorize():
            # Like Google: a wrong client or redirect_uri gets an error page, never a redirect.
            if request.args.get("client_id") != self.client_id:
                return "invalid_client", 400
            if request.args.get("redirect_uri") != self.redirect_uri:
                return "redirect_uri_mismatch", 400
            if request.args.get("response_type") != "code":
                return "unsupported_response_type", 400
            back = {"state": request.args.get("state", "")}
            if self.authorize_error:
                back["error"] = self.authorize_error
            elif not self.next_identity:
                return "the test did not set provider.next_identity", 500
            else:
                code = secrets.token_urlsafe(16)
                with self._lock:
                    self._grants[code] = {"identity": dict(self.next_identity),
                                          "nonce": request.args.get("nonce"),
                                          "redirect_uri": self.redirect_uri}
                back["code"] = code
            return redirect(f"{self.redirect_uri}?{urlencode(back)}")

        @app.post("/token")
        def token():
            if self._client_auth() is None:
                return jsonify(error="invalid_client"), 401
            with self._lock:
                grant = self._grants.pop(request.form.get("code", ""), None)
            if (grant is None or request.form.get("grant_type") != "authorization_code"
                    or request.form.get("redirect_uri") != grant["redirect_uri"]):
                return jsonify(error="invalid_grant"), 400
            access_token = secrets.token_urlsafe(24)
            with self._lock:
                self._access_tokens[access_token] = grant["identity"]
            return jsonify(access_token=access_token, token_type="Bearer", expires_in=3600,
                           scope="openid email profile", id_token=self._id_token(grant))

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([self.key]).as_dict(private=False))

        @app.get("/userinfo")
        def userinfo():
            bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
            identity = self._access_tokens.get(bearer)
            if identity is None:
                return jsonify(error="invalid_token"), 401
            return jsonify(identity)

        return app
