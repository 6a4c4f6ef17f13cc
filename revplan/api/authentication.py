"""API credentials: DRF's token (one per user), refused once REVPLAN_TOKEN_TTL_HOURS old; and a tenant's
integration token (`Authorization: Bearer rvp_…`), accepted only where a view names it (posting signals).

Apart from auth.py's views because REST_FRAMEWORK names this class: DRF imports it while rest_framework.views
is still loading, so this module may not import views.
"""
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, TokenAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from plans import services

BEARER = "Bearer"
# The same answer for an unknown, malformed, revoked or expired token: nothing tells whether it existed.
TOKEN_REFUSED = "The integration token is not valid."
ONLY_SIGNALS = ("A Bearer credential is an integration token, accepted only by POST "
                "/api/v1/accounts/{account_id}/signals/; a person signs in with `Authorization: Token <token>`.")


def token_expires_at(token: Token) -> datetime:
    return token.created + timedelta(hours=settings.REVPLAN_TOKEN_TTL_HOURS)


def token_for(*, user) -> Token:
    """The user's token, replaced by a new one once it has expired."""
    Token.objects.filter(user=user, created__lte=timezone.now() - timedelta(hours=settings.REVPLAN_TOKEN_TTL_HOURS)
                         ).delete()
    token, _ = Token.objects.get_or_create(user=user)  # a concurrent login's token is fetched, not duplicated
    return token


def bearer_secret(request) -> str | None:
    """The credential of an `Authorization: Bearer <secret>` header, None without one."""
    parts = get_authorization_header(request).split()
    if not parts or parts[0].lower() != BEARER.lower().encode():
        return None
    if len(parts) != 2:
        raise AuthenticationFailed(TOKEN_REFUSED)
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise AuthenticationFailed(TOKEN_REFUSED) from None


class ExpiringTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <token>`, refused (401) once the token is REVPLAN_TOKEN_TTL_HOURS old.

    First of the default classes, so it also turns away an integration token (a Bearer credential) on
    every view that does not name IntegrationTokenAuthentication before it: without this the request
    would only be anonymous, and an AllowAny view would serve it.
    """

    def authenticate(self, request):
        if bearer_secret(request) is not None:
            raise AuthenticationFailed(ONLY_SIGNALS)
        return super().authenticate(request)

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expires_at(token) <= timezone.now():
            raise AuthenticationFailed("The token has expired; ask for a new one at POST /api/v1/auth/token/.")
        return user, token


class IntegrationTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer rvp_…`, for the views that list it first (POST …/signals/), and only for
    `methods` there: request.auth is the IntegrationToken, request.user an AnonymousUser — never a user, so
    no membership, selector or authority rule grants it anything. An unknown, revoked or expired token is a
    401 that does not say which."""

    methods = frozenset({"POST"})

    def authenticate(self, request):
        secret = bearer_secret(request)
        if secret is None:
            return None
        if request.method not in self.methods:
            raise AuthenticationFailed(ONLY_SIGNALS)
        token = services.integration_token_authenticate(secret)
        if token is None:
            raise AuthenticationFailed(TOKEN_REFUSED)
        return AnonymousUser(), token

    def authenticate_header(self, request):
        return f'{BEARER} realm="api"'

