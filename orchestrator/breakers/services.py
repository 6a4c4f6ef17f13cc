"""The breakers' rules: the gate before a connector try, counting each try's outcome, and a tenant
admin's forced open or close. The execution spine calls gate() and record(); plans.py holds and lifts
the plans; sweep.py makes the moves nobody's try makes (the cool-down's end, a lost probe).

Hot path, with the breaker CLOSED: gate() is one Redis GET, record() one pipelined Redis round trip
(two for a transient failure: the window's counts come back in the same pipeline). No database
round trip unless the breaker moves or the cached state expired (every STATE_CACHE_SECONDS).
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from orchestrator.breakers import machine, window
from orchestrator.breakers.config import GUARDED_CONNECTORS, BreakerConfig, config_for
from orchestrator.breakers.models import BreakerState, CircuitBreaker
from orchestrator.execution.models import AttemptOutcome
from plans import ledger
from plans.errors import ValidationFailed
from plans.services import require_admin

logger = logging.getLogger(__name__)

COMPONENT = "breaker"
ACTOR = ledger.system_actor(COMPONENT)
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
FORCIBLE = (OPEN, CLOSED)


@dataclass(frozen=True)
class Verdict:
    """May the caller send (its next try)? `probe`: it is the half-open breaker's single probe."""

    allowed: bool
    state: str = CLOSED
    probe: bool = False


ALLOWED = Verdict(True)


def enabled(connector: str) -> bool:
    return settings.REVPLAN_BREAKERS_ENABLED and connector in GUARDED_CONNECTORS


def current_state(tenant_id: UUID, connector: str) -> str:
    """The breaker's state: cached in Redis, else its row (none: CLOSED), cached again. With Redis down,
    the row: a breaker forced open stays open (one query per try, while Redis is down)."""
    try:
        cached = window.cached_state(tenant_id, connector)
    except RedisError:
        cached = None
    if cached:
        return cached
    state = (CircuitBreaker.objects.filter(tenant_id=tenant_id, connector=connector)
             .values_list("state", flat=True).first()) or CLOSED
    window.cache_state(tenant_id, connector, state)
    return state


def gate(tenant_id: UUID, connector: str, *, holder: str) -> Verdict:
    """Before the first try of a delivery. `holder`: the plan's id (a planless intent's own id), which
    a half-open breaker compares with its probe slot."""
    if not enabled(connector):
        return ALLOWED
    state = current_state(tenant_id, connector)
    if state == CLOSED:
        return ALLOWED
    if state == HALF_OPEN and window.claim_probe(tenant_id, connector, holder):
        logger.info("breaker probe let through", extra={"tenant_id": str(tenant_id), "connector": connector,
                                                        "holder": holder})
        return Verdict(True, state=HALF_OPEN, probe=True)
    return Verdict(False, state=state)


def record(tenant_id: UUID, connector: str, outcome: str, *, holder: str, probe: bool = False, error: str = "",
           now: datetime | None = None) -> Verdict:
    """Count one try's outcome (an AttemptOutcome) and say whether the caller may try again: after a
    transient failure that opened the breaker (or found it opened meanwhile), it may not. A permanent
    error is a try the connector answered: it counts as a try, not as a failure."""
    if not enabled(connector):
        return ALLOWED
    now = now or timezone.now()
    config = config_for(connector)
    failed = outcome == AttemptOutcome.TRANSIENT_ERROR
    counts, cached = window.count_try(tenant_id, connector, config, failed=failed, now=now.timestamp(),
                                      read=failed and not probe)
    if probe:
        return _probe_reported(tenant_id, connector, config, holder=holder, failed=failed, error=error, now=now)
    if not failed or counts is None:
        return ALLOWED
    state = cached or current_state(tenant_id, connector)
    if state != CLOSED:
        return Verdict(False, state=state)  # opened meanwhile: stop retrying, hold the plan
    if not config.trips(counts.tries, counts.failures):
        return ALLOWED
    evidence = {**counts.as_dict(), **config.as_dict(), "last_error": error[:500]}
    machine.move(tenant_id, connector, machine.Move(
        to=OPEN, cause=machine.FAILURE_RATE_EXCEEDED, actor=ACTOR, evidence=evidence,
        retry_at=now + timedelta(seconds=config.cool_down_seconds),
        explanation=f"{counts.failures} of the last {counts.tries} {connector} tries in {config.window_seconds} s "
                    f"failed transiently (it opens at {config.failure_rate:.0%} of at least {config.min_tries}): "
                    f"nothing is sent to it for {config.cool_down_seconds:g} s, then one probe.",
    ), expect=frozenset({CLOSED}), now=now)
    return Verdict(False, state=OPEN)


def _probe_reported(tenant_id: UUID, connector: str, config: BreakerConfig, *, holder: str, failed: bool,
                    error: str, now: datetime) -> Verdict:
    window.set_probe(tenant_id, connector, "")
    if failed:
        machine.move(tenant_id, connector, machine.Move(
            to=OPEN, cause=machine.PROBE_FAILED, actor=ACTOR, evidence={"probe_holder": holder, "error": error[:500]},
            retry_at=now + timedelta(seconds=config.cool_down_seconds),
            explanation=f"The probe failed ({error.rstrip('.') or 'a transient error'}): the {connector} breaker is "
                        f"open again for {config.cool_down_seconds:g} s.",
        ), expect=frozenset({HALF_OPEN}), now=now)
        return Verdict(False, state=OPEN)
    closed = machine.move(tenant_id, connector, machine.Move(
        to=CLOSED, cause=machine.PROBE_SUCCEEDED, actor=ACTOR, evidence={"probe_holder": holder},
        explanation=f"The probe reached the {connector} connector: steps are sent to it again, and the plans it "
                    "held run on.",
    ), expect=frozenset({HALF_OPEN}), now=now)
    if closed is not None:
        window.clear_window(tenant_id, connector, config, now=now.timestamp())
    return ALLOWED


# --- a tenant admin's force --------------------------------------------------------------------------


def breaker_force(*, tenant_id: UUID, connector: str, state: str, user, reason: str,
                  now: datetime | None = None) -> CircuitBreaker:
    """Force the breaker OPEN (nothing is sent until a person closes it: no cool-down, no probe) or
    CLOSED (the window forgotten, the plans it held run on: the first LIFT_BATCH now, the sweep the rest).
    TENANT_ADMIN; ledgered BREAKER_FORCED."""
    if connector not in GUARDED_CONNECTORS:
        raise ValidationFailed("VALIDATION_ERROR", f"No circuit breaker guards {connector!r}: only "
                                                   f"{', '.join(GUARDED_CONNECTORS)}.")
    if state not in FORCIBLE:
        raise ValidationFailed("VALIDATION_ERROR", "A breaker is forced OPEN or CLOSED.")
    if not (reason or "").strip():
        raise ValidationFailed("REASON_REQUIRED", "Say why the breaker is forced.")
    now = now or timezone.now()
    actor = ledger.user_actor(user)
    with transaction.atomic():
        require_admin(user=user, tenant_id=tenant_id)
        opening = state == OPEN
        machine.move(tenant_id, connector, machine.Move(
            to=state, cause=machine.FORCED_OPEN if opening else machine.FORCED_CLOSED, actor=actor, forced=opening,
            evidence={"reason": reason.strip()},
            explanation=f"Forced {state.lower()} by {user.get_username()}: {reason.strip().rstrip('.')}."
                        + (" Nothing is sent until a tenant admin closes it." if opening else ""),
        ), expect=None, now=now)
        breaker = CircuitBreaker.objects.get(tenant_id=tenant_id, connector=connector)
    window.set_probe(tenant_id, connector, "")
    if not opening:
        from orchestrator.breakers import plans as held  # plans.py imports this module

        window.clear_window(tenant_id, connector, config_for(connector), now=now.timestamp())
        # The first batch now; the breakers' sweep lifts the rest (a request must not lift thousands).
        held.lift_held(tenant_id, connector, limit=held.LIFT_BATCH,
                       why=f"the {connector} circuit breaker was closed by {user.get_username()}")
    return breaker
