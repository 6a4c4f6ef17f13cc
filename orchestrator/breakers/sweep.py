"""The breakers' beat job: the moves no try makes. An OPEN breaker past its cool-down half-opens and lets
the longest-held plan through as its probe; a HALF_OPEN one whose probe was lost (its plan did not run,
its worker died) lets the next one through; the plans still held by a CLOSED breaker (a close that raced a
hold) are lifted. Its cost grows with the breakers that are not CLOSED, not with the tenants or plans."""
import logging
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from orchestrator.breakers import machine, window
from orchestrator.breakers.models import BreakerState, CircuitBreaker
from orchestrator.breakers.plans import LIFT_BATCH, held_plan_ids, lift_held, lift_plan
from orchestrator.breakers.services import ACTOR
from plans.models import PauseKind, PauseLayer

logger = logging.getLogger(__name__)


def sweep(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    result = {"half_opened": 0, "probes_released": 0, "lifted": 0}
    not_closed = list(CircuitBreaker.objects.filter(~Q(state=BreakerState.CLOSED)))
    for breaker in not_closed:
        if breaker.state == BreakerState.OPEN and not breaker.forced and breaker.retry_at and breaker.retry_at <= now:
            moved = half_open(breaker, now=now)
            result["half_opened"] += moved is not None
            breaker = moved or breaker
        elif breaker.state == BreakerState.HALF_OPEN and window.probe_holder(breaker.tenant_id,
                                                                                breaker.connector) is None:
            result["probes_released"] += release_probe(breaker) is not None
        machine.publish(breaker)
    holding = {(breaker.tenant_id, breaker.connector) for breaker in not_closed}
    held_pairs = (PauseLayer.objects.filter(kind=PauseKind.BREAKER, lifted_at__isnull=True)
                  .values_list("plan__tenant_id", "scope").distinct())
    for tenant_id, connector in held_pairs:
        if (tenant_id, connector) not in holding:
            result["lifted"] += lift_held(tenant_id, connector, limit=LIFT_BATCH,
                                          why=f"the {connector} circuit breaker is closed")
    return result


def half_open(breaker: CircuitBreaker, *, now: datetime) -> CircuitBreaker | None:
    """OPEN → HALF_OPEN with the longest-held plan as the probe (one that nothing else holds, so it runs;
    none: the first step to come)."""
    oldest = held_plan_ids(breaker.tenant_id, breaker.connector, limit=1, only_breaker=True)
    holder = str(oldest[0]) if oldest else ""
    window.set_probe(breaker.tenant_id, breaker.connector, holder)
    moved = machine.move(breaker.tenant_id, breaker.connector, machine.Move(
        to=BreakerState.HALF_OPEN, cause=machine.COOL_DOWN_OVER, actor=ACTOR, probe_holder=holder,
        evidence={"probe_holder": holder, "held_plans": len(oldest)},
        explanation=f"The cool-down is over: {f'plan {holder}' if holder else 'the next step'} is let through "
                    f"to the {breaker.connector} connector as the single probe.",
    ), expect=frozenset({BreakerState.OPEN}), now=now)
    if moved is not None and holder:
        lift_plan(oldest[0], breaker.connector, why=f"the {breaker.connector} circuit breaker is half-open: this "
                                                    "plan's step is its probe")
    return moved


def release_probe(breaker: CircuitBreaker) -> str | None:
    """The probe did not report within its time: the next longest-held plan is let through instead."""
    oldest = held_plan_ids(breaker.tenant_id, breaker.connector, limit=1, only_breaker=True)
    if not oldest:
        return None  # nothing held: the first step to come is the probe
    holder = str(oldest[0])
    window.set_probe(breaker.tenant_id, breaker.connector, holder)
    logger.warning("breaker probe lost; another plan is let through", extra={
        "tenant_id": str(breaker.tenant_id), "connector": breaker.connector, "plan_id": holder})
    lift_plan(oldest[0], breaker.connector, why=f"the {breaker.connector} circuit breaker is half-open and its "
                                                "probe did not report: this plan's step is the probe now")
    return holder
