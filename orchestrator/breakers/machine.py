"""The breaker's state machine: a declared table of moves and the one function that makes them.

Each move locks the (tenant, connector) row, checks the table, writes the row and the tenant-chain
ledger entry in one transaction, drops the cached state (now, and again once committed, so no gate
re-reads the old row into the cache in between) and counts the move in the metrics once committed.
"""
import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import transaction

from orchestrator.breakers import metrics, window
from orchestrator.breakers.models import BreakerState, CircuitBreaker
from plans import ledger

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

# Causes (the entries' reason codes).
FAILURE_RATE_EXCEEDED = "FAILURE_RATE_EXCEEDED"
COOL_DOWN_OVER = "COOL_DOWN_OVER"
PROBE_SUCCEEDED = "PROBE_SUCCEEDED"
PROBE_FAILED = "PROBE_FAILED"
FORCED_OPEN = "FORCED_OPEN"
FORCED_CLOSED = "FORCED_CLOSED"

# (from, to, cause) -> the ledger writer. Anything else is refused.
MOVES = {
    (CLOSED, OPEN, FAILURE_RATE_EXCEEDED): ledger.breaker_opened,
    (OPEN, HALF_OPEN, COOL_DOWN_OVER): ledger.breaker_half_opened,
    (HALF_OPEN, CLOSED, PROBE_SUCCEEDED): ledger.breaker_closed,
    (HALF_OPEN, OPEN, PROBE_FAILED): ledger.breaker_opened,
    **{(state, OPEN, FORCED_OPEN): ledger.breaker_forced for state in BreakerState},
    **{(state, CLOSED, FORCED_CLOSED): ledger.breaker_forced for state in BreakerState},
}


class BreakerMoveRefused(Exception):
    """A move the table does not have: a bug in the caller, not a race (races return None)."""


@dataclass(frozen=True)
class Move:
    to: BreakerState
    cause: str
    actor: str
    explanation: str
    evidence: dict
    retry_at: datetime | None = None  # OPEN: the end of the cool-down
    probe_holder: str = ""  # HALF_OPEN: the probe chosen, if any
    forced: bool = False


def locked_breaker(tenant_id: UUID, connector: str, *, now: datetime) -> CircuitBreaker:
    """The row, created CLOSED if missing (two creators at once: the constraint keeps one), row-locked."""
    CircuitBreaker.objects.bulk_create(
        [CircuitBreaker(tenant_id=tenant_id, connector=connector, changed_at=now, changed_by="system:breaker")],
        ignore_conflicts=True,
    )
    return CircuitBreaker.objects.select_for_update().get(tenant_id=tenant_id, connector=connector)


def move(tenant_id: UUID, connector: str, change: Move, *, expect: frozenset[str] | None,
         now: datetime) -> CircuitBreaker | None:
    """Make `change` if the breaker is in one of `expect` (None: any); returns the row, or None when the
    breaker had moved on meanwhile (another worker tripped or closed it first) or nothing would change."""
    with transaction.atomic():
        breaker = locked_breaker(tenant_id, connector, now=now)
        before = breaker.state
        if expect is not None and before not in expect:
            return None
        writer = MOVES.get((before, change.to, change.cause))
        if writer is None:
            raise BreakerMoveRefused(f"{connector} breaker: {before} -> {change.to} by {change.cause} is not a move")
        if before == change.to and breaker.forced == change.forced:
            return None  # forced into the state it is in: nothing to record
        breaker.state, breaker.forced = change.to, change.forced
        breaker.changed_at, breaker.changed_by = now, change.actor
        breaker.reason_code, breaker.explanation, breaker.evidence = change.cause, change.explanation, change.evidence
        breaker.retry_at = change.retry_at if change.to == OPEN else None
        breaker.probe_holder = change.probe_holder if change.to == HALF_OPEN else ""
        if change.to == OPEN and before != OPEN:
            breaker.times_opened += 1
        breaker.save()
        writer(tenant_id, actor=change.actor, connector=connector, from_state=before, to_state=change.to,
               reason_code=change.cause, explanation=change.explanation,
               data={"evidence": change.evidence, "forced": change.forced,
                     "retry_at": breaker.retry_at.isoformat() if breaker.retry_at else None,
                     "probe_holder": breaker.probe_holder})
        window.forget_state(tenant_id, connector)
        transaction.on_commit(lambda: _committed(breaker, change))
    logger.warning("circuit breaker %s -> %s", before, change.to, extra={
        "tenant_id": str(tenant_id), "connector": connector, "cause": change.cause, **change.evidence})
    return breaker


def _committed(breaker: CircuitBreaker, change: Move) -> None:
    window.forget_state(breaker.tenant_id, breaker.connector)
    metrics.TRANSITIONS.labels(breaker.connector, breaker.state, change.cause).inc()
    publish(breaker)


def publish(breaker: CircuitBreaker) -> None:
    metrics.STATE.labels(str(breaker.tenant_id), breaker.connector).set(metrics.STATE_VALUES[breaker.state])
