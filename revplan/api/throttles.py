"""Request rates: per user (and per integration token), per anonymous address, and on the token endpoint per
address and per username.

Counts live in Django's cache, which is Redis (settings.CACHES), so every web process shares them. Rates
come from settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (REVPLAN_THROTTLE_* in the environment); a
rate of None turns that throttle off. A client's address is the connection's unless REVPLAN_NUM_PROXIES
says how many proxies in front of the app append to X-Forwarded-For (DRF's NUM_PROXIES).
"""
import hashlib
import logging

from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from plans.models import IntegrationToken

logger = logging.getLogger(__name__)


class RateFromSettings(SimpleRateThrottle):
    """Reads its rate when a request comes (DRF's class attribute is read once, at import: an override in
    settings would never apply) and lets the request through, logged, when Redis cannot be reached: an
    outage of the cache must not take the API down with it (as with the plan locks)."""

    def get_rate(self):
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError as error:
            raise ImproperlyConfigured(f"DEFAULT_THROTTLE_RATES has no rate for {self.scope!r}.") from error

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except RedisError as error:
            logger.warning("throttle counts unavailable; request let through", extra={"scope": self.scope,
                                                                                      "error": str(error)})
            return True


class UserThrottle(RateFromSettings, UserRateThrottle):
    """Authenticated requests per user (REVPLAN_THROTTLE_USER), and an integration token's per token at the
    same rate; anonymous ones fall to AnonThrottle's count."""

    def get_cache_key(self, request, view):
        if isinstance(request.auth, IntegrationToken):
            # A token's request carries no user: without this it would count against its address, shared
            # by every integration behind the same NAT, at the anonymous rate.
            return self.cache_format % {"scope": self.scope, "ident": f"integration:{request.auth.pk}"}
        return super().get_cache_key(request, view)


class AnonThrottle(RateFromSettings, AnonRateThrottle):
    """Unauthenticated requests per client address (REVPLAN_THROTTLE_ANON); an integration token's are not
    anonymous (UserThrottle counts them per token)."""

    def get_cache_key(self, request, view):
        if isinstance(request.auth, IntegrationToken):
            return None
        return super().get_cache_key(request, view)


class TokenAddressThrottle(RateFromSettings):
    """Token requests per client address (REVPLAN_THROTTLE_TOKEN): one address guessing many users' passwords."""

    scope = "token_address"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class TokenUsernameThrottle(RateFromSettings):
    """Token requests per username (REVPLAN_THROTTLE_TOKEN): many addresses guessing one user's password."""

    scope = "token_username"

    def get_cache_key(self, request, view):
        username = request.data.get("username") if isinstance(request.data, dict) else None
        if not isinstance(username, str) or not username:
            return None  # nothing to count by; the request fails validation, and the address throttle still counts it
        # Hashed: any text a client sends becomes a short key; folded so "Alice" and "alice" share a count.
        return self.cache_format % {"scope": self.scope,
                                    "ident": hashlib.sha256(username.casefold().encode()).hexdigest()}
