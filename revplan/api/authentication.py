"""API tokens that expire: DRF's token (one per user) refused once REVPLAN_TOKEN_TTL_HOURS old.

Apart from auth.py's views because REST_FRAMEWORK names this class: DRF imports it while rest_framework.views
is still loading, so this module may not import views.
"""
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


def token_expires_at(token: Token) -> datetime:
    return token.created + timedelta(hours=settings.REVPLAN_TOKEN_TTL_HOURS)


def token_for(*, user) -> Token:
    """The user's token, replaced by a new one once it has expired."""
    Token.objects.filter(user=user, created__lte=timezone.now() - timedelta(hours=settings.REVPLAN_TOKEN_TTL_HOURS)
                         ).delete()
    token, _ = Token.objects.get_or_create(user=user)  # a concurrent login's token is fetched, not duplicated
    return token


class ExpiringTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <token>`, refused (401) once the token is REVPLAN_TOKEN_TTL_HOURS old."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expires_at(token) <= timezone.now():
            raise AuthenticationFailed("The token has expired; ask for a new one at POST /api/v1/auth/token/.")
        return user, token
