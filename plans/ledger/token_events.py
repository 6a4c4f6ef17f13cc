"""Writers for a tenant's chain: an integration token created, rotated or revoked.

An entry names the token (id, name, the secret's first characters) and never holds the secret or its
hash: the ledger is exported and read by auditors, and a hash of a high-entropy secret is as good as
the secret to anyone who can present it to a lookup by hash.
"""
from plans.ledger.chain import append
from plans.models import EventType, IntegrationToken, PlanLedgerEntry


def _token_facts(token: IntegrationToken) -> dict:
    return {
        "token_id": str(token.id),
        "name": token.name,
        "key_prefix": token.key_prefix,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }


def _expiry_sentence(token: IntegrationToken) -> str:
    return f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "does not expire"


def integration_token_created(token: IntegrationToken, *, actor: str) -> PlanLedgerEntry:
    return append(
        tenant_id=token.tenant_id,
        plan_id=None,
        event_type=EventType.INTEGRATION_TOKEN_CREATED,
        actor=actor,
        reason_code="INTEGRATION_TOKEN_CREATED",
        explanation=f"Integration token {token.name!r} ({token.key_prefix}…) created; it may post signals and "
                    f"{_expiry_sentence(token)}.",
        data=_token_facts(token),
    )


def integration_token_rotated(old: IntegrationToken, new: IntegrationToken, *, actor: str) -> PlanLedgerEntry:
    return append(
        tenant_id=new.tenant_id,
        plan_id=None,
        event_type=EventType.INTEGRATION_TOKEN_ROTATED,
        actor=actor,
        reason_code="INTEGRATION_TOKEN_ROTATED",
        explanation=f"Integration token {new.name!r} rotated: {old.key_prefix}… revoked, {new.key_prefix}… issued "
                    f"in its place ({_expiry_sentence(new)}).",
        data={**_token_facts(new), "replaces": {"token_id": str(old.id), "key_prefix": old.key_prefix}},
    )


def integration_token_revoked(token: IntegrationToken, *, actor: str) -> PlanLedgerEntry:
    return append(
        tenant_id=token.tenant_id,
        plan_id=None,
        event_type=EventType.INTEGRATION_TOKEN_REVOKED,
        actor=actor,
        reason_code="INTEGRATION_TOKEN_REVOKED",
        explanation=f"Integration token {token.name!r} ({token.key_prefix}…) revoked; it is refused from now on.",
        data=_token_facts(token),
    )
