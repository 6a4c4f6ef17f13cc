"""Writers for a tenant's chain: a connector's circuit breaker changed state (orchestrator.breakers)."""
from uuid import UUID

from plans.ledger.chain import append
from plans.models import EventType, PlanLedgerEntry


def _breaker_entry(event_type: EventType, tenant_id: UUID, *, actor: str, connector: str, from_state: str,
                   to_state: str, reason_code: str, explanation: str, data: dict) -> PlanLedgerEntry:
    return append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=event_type,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation,
        data={"connector": connector, "from_state": from_state, "to_state": to_state, **data},
    )


def breaker_opened(tenant_id: UUID, **fields) -> PlanLedgerEntry:
    """CLOSED → OPEN (the failure rate passed the threshold) or HALF_OPEN → OPEN (the probe failed)."""
    return _breaker_entry(EventType.BREAKER_OPENED, tenant_id, **fields)


def breaker_half_opened(tenant_id: UUID, **fields) -> PlanLedgerEntry:
    """OPEN → HALF_OPEN: the cool-down is over, one probe is let through."""
    return _breaker_entry(EventType.BREAKER_HALF_OPENED, tenant_id, **fields)


def breaker_closed(tenant_id: UUID, **fields) -> PlanLedgerEntry:
    """HALF_OPEN → CLOSED: the probe reached the connector."""
    return _breaker_entry(EventType.BREAKER_CLOSED, tenant_id, **fields)


def breaker_forced(tenant_id: UUID, **fields) -> PlanLedgerEntry:
    """A tenant admin forced the breaker open or closed."""
    return _breaker_entry(EventType.BREAKER_FORCED, tenant_id, **fields)
