"""Integration tokens: a tenant admin creates, rotates and revokes the credential a CRM or a support desk
uses to post signals; a presented secret is checked here.

The secret (`rvp_` + 43 url-safe characters, 256 random bits) is returned once, by create and rotate;
only its sha256 is stored, with its first characters (key_prefix) to tell tokens apart. A token is
not a user: it may write signals to its own tenant's accounts and nothing else (the HTTP layer holds
it to that; services.signal_record keeps it to its tenant and names it in the ledger as
`integration:<token id>`).
"""
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from plans import ledger, selectors
from plans.authority import NOT_ALLOWED, Verb, denial
from plans.errors import Conflict, NotAllowed, NotFound, ValidationFailed
from plans.models import IntegrationToken, Role
from plans.services.common import require_authority

SECRET_PREFIX = "rvp_"
# 32 bytes: 256 bits, beyond guessing; token_urlsafe makes them 43 characters.
SECRET_BYTES = 32
KEY_PREFIX_LENGTH = 12  # "rvp_" + 8 characters: IntegrationToken.key_prefix's max_length
# Longer than any secret we issue; a longer header is refused before it is hashed.
SECRET_MAX_LENGTH = 200
NAME_MAX_LENGTH = 100
# An explicit expiry this far out at most: a credential that outlives ten years of staff is an oversight
# (and rotate adds the same lifetime to now, which must stay a valid date).
MAX_LIFETIME = timedelta(days=3660)
# last_used_at is written at most this often per token: a CRM posting a signal a second must not turn
# every request into a row write, and "used in the last minute" is as much as an admin needs to know.
LAST_USED_RESOLUTION = timedelta(minutes=1)

TOKEN_NAME_TAKEN = "TOKEN_NAME_TAKEN"
TOKEN_REVOKED = "TOKEN_REVOKED"


class TokenState(StrEnum):
    LIVE = "LIVE"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"


def integration_token_state(token: IntegrationToken, *, now: datetime | None = None) -> TokenState:
    """Whether the token is accepted now (LIVE), or why not."""
    if token.revoked_at is not None:
        return TokenState.REVOKED
    if token.expires_at is not None and token.expires_at <= (now or timezone.now()):
        return TokenState.EXPIRED
    return TokenState.LIVE


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def _clean_name(name) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > NAME_MAX_LENGTH or any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise ValidationFailed("VALIDATION_ERROR", f"name is 1 to {NAME_MAX_LENGTH} printable characters.")
    return name


def _check_expiry(expires_at: datetime | None, *, now: datetime) -> None:
    if expires_at is None:
        return
    if timezone.is_naive(expires_at):
        raise ValidationFailed("VALIDATION_ERROR", "expires_at needs a time zone.")
    if not now < expires_at <= now + MAX_LIFETIME:
        raise ValidationFailed("VALIDATION_ERROR",
                               f"expires_at is in the future, at most {MAX_LIFETIME.days} days from now.")


def _issue(*, tenant_id: UUID, name: str, expires_at: datetime | None, user, now: datetime
           ) -> tuple[IntegrationToken, str]:
    secret = _new_secret()
    try:
        with transaction.atomic():  # a savepoint: the refusal leaves the caller's transaction usable
            token = IntegrationToken.objects.create(
                tenant_id=tenant_id, name=name, key_prefix=secret[:KEY_PREFIX_LENGTH], key_hash=secret_hash(secret),
                created_by=user, created_at=now, expires_at=expires_at,
            )
    except IntegrityError:
        # The live-name constraint (a sha256 collision of 256 random bits does not happen).
        raise Conflict(TOKEN_NAME_TAKEN, f"The tenant has a live integration token named {name!r}; rotate or "
                                         "revoke it, or choose another name.") from None
    return token, secret


def integration_token_create(*, tenant_id: UUID, name: str, expires_at: datetime | None = None, user
                             ) -> tuple[IntegrationToken, str]:
    """A new token for the tenant (TENANT_ADMIN): the row, and the secret, which is never shown again."""
    now = timezone.now()
    name = _clean_name(name)
    _check_expiry(expires_at, now=now)
    with transaction.atomic():
        require_authority(Verb.MANAGE_INTEGRATION_TOKENS, user=user, tenant_id=tenant_id, what="tenant")
        token, secret = _issue(tenant_id=tenant_id, name=name, expires_at=expires_at, user=user, now=now)
        ledger.integration_token_created(token, actor=ledger.user_actor(user))
    return token, secret


def _lock_for_admin(token_id: UUID, *, user) -> IntegrationToken:
    token = IntegrationToken.objects.select_for_update().filter(pk=token_id).first()
    if token is None:
        raise NotFound("NOT_FOUND", "The integration token does not exist.")
    require_authority(Verb.MANAGE_INTEGRATION_TOKENS, user=user, tenant_id=token.tenant_id,
                      what="integration token")
    return token


def integration_token_rotate(*, token_id: UUID, user) -> tuple[IntegrationToken, str]:
    """Revoke the token and issue its successor with the same name and the same lifetime (counted from
    now; none if it had none), in one transaction: a client switches to the new secret, and the old one
    is refused from the commit on. An expired token may be rotated (that is how it is renewed); a revoked
    one may not (409): revoking was a decision, and create makes a new one."""
    now = timezone.now()
    with transaction.atomic():
        old = _lock_for_admin(token_id, user=user)
        if old.revoked_at is not None:
            raise Conflict(TOKEN_REVOKED, "The integration token was revoked; create a new one instead.")
        expires_at = now + (old.expires_at - old.created_at) if old.expires_at else None
        old.revoked_at = now
        old.save(update_fields=["revoked_at"])
        new, secret = _issue(tenant_id=old.tenant_id, name=old.name, expires_at=expires_at, user=user, now=now)
        ledger.integration_token_rotated(old, new, actor=ledger.user_actor(user))
    return new, secret


def integration_token_revoke(*, token_id: UUID, user) -> IntegrationToken:
    """Refuse the token from now on. Revoking a revoked token changes nothing (and writes nothing)."""
    with transaction.atomic():
        token = _lock_for_admin(token_id, user=user)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            ledger.integration_token_revoked(token, actor=ledger.user_actor(user))
    return token


def integration_token_authenticate(secret) -> IntegrationToken | None:
    """The live token whose secret this is, or None (unknown, malformed, revoked or expired: the caller
    cannot tell which).

    Looked up by the secret's sha256, so the database index compares hashes, not the secret: a timing
    difference tells an attacker how many leading hex digits of a hash they matched, which says nothing
    about a secret of 256 random bits. The compare_digest after it is belt and braces.

    A token revoked while a request with it is in flight may still finish that request; the next is
    refused."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX) or len(secret) > SECRET_MAX_LENGTH:
        return None
    digest = secret_hash(secret)
    token = IntegrationToken.objects.select_related("tenant").filter(key_hash=digest).first()
    if token is None or not hmac.compare_digest(token.key_hash, digest):
        return None
    now = timezone.now()
    if integration_token_state(token, now=now) != TokenState.LIVE:
        return None
    stale = now - LAST_USED_RESOLUTION
    if token.last_used_at is None or token.last_used_at <= stale:
        # A conditional UPDATE outside any lock: of concurrent first uses in a minute one writes, the
        # others match no row; none of them waits for a lock the request itself may need.
        IntegrationToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale)).update(last_used_at=now)
        token.last_used_at = now
    return token


# --- reads ------------------------------------------------------------------------------------------


def managing_roles() -> list[Role]:
    return [role for role in Role if denial(Verb.MANAGE_INTEGRATION_TOKENS, role=role, user_id=0) is None]


def integration_tokens_for_admin(user) -> QuerySet[IntegrationToken]:
    """The tokens of the tenants where `user` may manage them (visible_to, narrowed to those roles)."""
    managed = selectors.active_memberships(user).filter(role__in=managing_roles()).values("tenant_id")
    return (selectors.visible_to(IntegrationToken.objects.all(), user).filter(tenant_id__in=managed)
            .select_related("tenant", "created_by"))


def integration_tokens_list(*, user, tenant_id: UUID | None = None) -> QuerySet[IntegrationToken]:
    """A tenant admin's tokens, newest first: of `tenant_id` (404 not a member, 403 another role), or of
    every tenant they administer (403 if none)."""
    if tenant_id is not None:
        require_authority(Verb.MANAGE_INTEGRATION_TOKENS, user=user, tenant_id=tenant_id, what="tenant")
    elif not selectors.active_memberships(user).filter(role__in=managing_roles()).exists():
        raise NotAllowed(NOT_ALLOWED, "Only a tenant admin may see a tenant's integration tokens.")
    tokens = integration_tokens_for_admin(user).order_by("-created_at", "id")
    return tokens.filter(tenant_id=tenant_id) if tenant_id is not None else tokens
