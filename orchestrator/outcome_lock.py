"""The lock a step's success is recorded under, and what it reads besides the plan (DESIGN §4); the same reads for
a batched advance's plans.

The engine records the outcome and advances the plan under this lock, in the success's transaction, and the
advance starts the plan's next step: the plan's facts (plans.selectors.lock_plan_with_facts) and its tenant's
settings a step's start reads — its autonomy settings and connector routes — come with the lock's statement,
instead of a read each.
"""
from dataclasses import dataclass

from django.db.models import OuterRef

from orchestrator.autonomy.services import tenant_settings_column
from orchestrator.execution.connectors import RoutingTable, routing_column, routing_of
from orchestrator.execution.models import ActionIntent
from plans.locking import lock_plan
from plans.models import RevenuePlan
from plans.selectors import lock_plan_with_facts, read_facts_of_plans

_COLUMNS = {
    "start_autonomy_settings": tenant_settings_column(OuterRef("tenant_id")),
    "start_routing": routing_column(OuterRef("tenant_id")),
}


@dataclass(frozen=True)
class StartSettings:
    """The tenant's settings a step's start reads, as this transaction read them with the plan's lock."""

    autonomy: dict  # orchestrator.autonomy.services.tenant_settings_column's value
    routing: RoutingTable


def lock_for_outcome(intent: ActionIntent) -> RevenuePlan | None:
    """The plan's row lock for a plan step's success (None: the intent is no plan's): with its facts and its
    tenant's start settings when the plan was read with the intent (its type names the facts to read)."""
    if not intent.plan_id:
        return None
    if not ActionIntent.plan.is_cached(intent):
        return lock_plan(intent.plan_id)
    return lock_plan_with_facts(intent.plan_id, like=intent.plan, also=_COLUMNS)


def read_batch_facts(plans: list[RevenuePlan]) -> None:
    """For plans a batched advance has locked: their facts and their tenants' start settings, in one read after the
    locks (plans.selectors.read_facts_of_plans), which each plan's advance then takes instead of reading its own."""
    if plans:
        read_facts_of_plans(plans, also=_COLUMNS)


def start_settings(plan: RevenuePlan) -> StartSettings | None:
    """The settings lock_for_outcome read with `plan`, once (None: not read with it; read them apart)."""
    autonomy = plan.__dict__.pop("start_autonomy_settings", None)
    routing = plan.__dict__.pop("start_routing", None)
    if autonomy is None or routing is None:
        return None
    return StartSettings(autonomy, routing_of(plan.tenant_id, routing))
