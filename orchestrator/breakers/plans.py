"""The plans a breaker holds: a BREAKER pause layer (scope: the connector) on each plan whose next step
it stopped, instead of burning that step's retries; lifted plan by plan when the breaker closes, and for
the one plan let through as the half-open probe. Every layer set or lifted is in the plan's ledger."""
import logging
from contextlib import suppress
from uuid import UUID

from django.db import transaction
from django.db.models import Exists, OuterRef

from orchestrator.breakers import metrics
from orchestrator.breakers.models import BreakerState, CircuitBreaker
from orchestrator.execution import leases
from plans import ledger, services
from plans.errors import DomainError
from plans.locking import lock_account_then_plan
from plans.models import PauseKind, PauseLayer

logger = logging.getLogger(__name__)

COMPONENT = "breaker"
ACTOR = ledger.system_actor(COMPONENT)
BREAKER_OPEN = "BREAKER_OPEN"


class BreakerOpen(DomainError):
    """The connector's breaker is open (or half-open with another probe): nothing was sent. The intent
    is PENDING again; its plan is to be held by hold_plan."""

    http_status = 409

    def __init__(self, connector: str, state: str, detail: str):
        super().__init__(BREAKER_OPEN, detail)
        self.connector, self.state = connector, state


def hand_back(intent_id: UUID, lease_token: UUID, *, tries_made: int) -> bool:
    """The spine's claim on an intent the breaker stopped, released: PENDING again with the number of tries
    it really made (an intent created claimed counts its first try before making it), so it is sent once
    the breaker lets it. Conditional on the claim, as every finish is."""
    return leases.release(leases.Claim(intent_id, lease_token), tries_made=tries_made)


def refusal(connector: str, state: str, action_type: str) -> BreakerOpen:
    waiting = "another step is its probe" if state == BreakerState.HALF_OPEN else "it is open"
    return BreakerOpen(connector, state, f"{action_type} was not sent: the {connector} circuit breaker says no "
                                         f"({waiting}).")


def hold_plan(*, plan_id: UUID, stopped: BreakerOpen, intent_id: UUID | None = None) -> None:
    """Hold the plan with a BREAKER layer for `stopped.connector` (one per connector; a plan that moved
    meanwhile — revised, aborted, finished — is left as it is)."""
    metrics.HELD.labels(stopped.connector).inc()
    with suppress(DomainError):
        services.plan_pause_by_policy(
            plan_id=plan_id, component=COMPONENT, kind=PauseKind.BREAKER, scope=stopped.connector,
            reason_code=BREAKER_OPEN,
            explanation=f"{stopped.detail} Nothing is sent to it, and no retry is spent, until it closes; the plan "
                        "runs on then.",
            facts={"connector": stopped.connector, "breaker_state": stopped.state,
                   "intent_id": str(intent_id) if intent_id else None},
        )


# Plans lifted at once when a breaker closes (a tenant admin's close, each sweep): an outage may have held
# thousands, each lifted in its own transaction; the next sweep goes on with the rest.
LIFT_BATCH = 500


def held_plan_ids(tenant_id: UUID, connector: str, *, limit: int | None = None,
                  only_breaker: bool = False) -> list[UUID]:
    """The plans the breaker holds, longest-held first. `only_breaker`: those nothing else holds (a probe
    must be a plan that runs once its BREAKER layer is lifted)."""
    rows = PauseLayer.objects.filter(kind=PauseKind.BREAKER, scope=connector, lifted_at__isnull=True,
                                     plan__tenant_id=tenant_id).order_by("set_at", "id")
    if only_breaker:
        other_layers = PauseLayer.objects.filter(plan_id=OuterRef("plan_id"), lifted_at__isnull=True).exclude(
            kind=PauseKind.BREAKER, scope=connector)
        rows = rows.exclude(Exists(other_layers))
    return list(rows.values_list("plan_id", flat=True)[:limit])


def lift_plan(plan_id: UUID, connector: str, *, why: str) -> bool:
    """Lift the plan's BREAKER layer for `connector`; the plan runs again if nothing else holds it."""
    with transaction.atomic():
        try:
            plan = lock_account_then_plan(plan_id)
        except DomainError:
            return False
        layers = [layer for layer in services.open_layers(plan)
                  if layer.kind == PauseKind.BREAKER and layer.scope == connector]
        if not layers:
            return False
        services.pause_layers_lift_locked(plan, layers, actor=ACTOR, why=why)
    logger.info("breaker layer lifted", extra={"plan_id": str(plan_id), "connector": connector})
    return True


def lift_held(tenant_id: UUID, connector: str, *, why: str, limit: int | None = None) -> int:
    """Every plan the (now CLOSED) breaker holds, its layer lifted, each in its own transaction (an outage
    may have held thousands: one transaction would hold their locks at once). Nothing while the breaker is
    not CLOSED (it tripped again since). Returns how many were lifted."""
    state = (CircuitBreaker.objects.filter(tenant_id=tenant_id, connector=connector)
             .values_list("state", flat=True).first()) or BreakerState.CLOSED
    if state != BreakerState.CLOSED:
        return 0
    return sum(lift_plan(plan_id, connector, why=why) for plan_id in held_plan_ids(tenant_id, connector, limit=limit))
