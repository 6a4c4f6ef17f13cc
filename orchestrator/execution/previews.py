"""The describer behind plans.previews: what each step's next attempt would do, told by the connector
that would do it, with the code that builds what it sends (so a preview cannot drift from the effect).

Three reads for any number of steps: their plans (tenant, account and owner joined), the tenants'
routes and connector configs, and — when a renewal brief is among them — the accounts' latest signals.
Nothing is sent and nothing is written: the intents described are unsaved (intents.step_intent_preview).
"""
import logging
from uuid import UUID

from orchestrator.execution.connectors import connector_named, routing_table
from orchestrator.execution.connectors.base import PermanentError, not_describable
from orchestrator.execution.connectors.internal import KIND_BY_ACTION_TYPE, recent_signals
from orchestrator.execution.intents import step_intent_preview
from orchestrator.execution.models import ConnectorName, InternalRecordKind
from plans.lifecycle import TERMINAL
from plans.models import PlanStep, RevenuePlan

logger = logging.getLogger(__name__)

UNDESCRIBABLE = "This step could not be described; what it sends will be in the ledger once it runs."


def describe_steps(steps: list[PlanStep]) -> dict[UUID, dict]:
    """step_id -> preview (plans.previews' shape) for each of `steps` whose plan has not ended."""
    plans = RevenuePlan.objects.select_related("tenant", "account__owner").in_bulk({step.plan_id for step in steps})
    steps = [step for step in steps if plans[step.plan_id].plan_status not in TERMINAL]  # they will not run
    if not steps:
        return {}
    table = routing_table({plans[step.plan_id].tenant_id for step in steps})
    routes: dict[UUID, tuple] = {}
    previews: dict[UUID, dict] = {}
    for step in steps:
        try:
            routes[step.step_id] = table.connector_for(plans[step.plan_id].tenant_id, step.action_type)
        except PermanentError as error:
            previews[step.step_id] = not_describable("", error)
    # Only a renewal brief reads signals: one read for all the accounts whose brief is on the page.
    brief_accounts = {plans[step.plan_id].account_id for step in steps if step.step_id in routes
                      and routes[step.step_id][0] == ConnectorName.INTERNAL
                      and KIND_BY_ACTION_TYPE.get(step.action_type) == InternalRecordKind.BRIEF}
    signals = recent_signals(brief_accounts) if brief_accounts else {}
    for step in steps:
        if step.step_id not in routes:
            continue
        plan = plans[step.plan_id]
        name, chosen = routes[step.step_id]
        try:
            connector = connector_named(name, chosen, tenant_slug=plan.tenant.slug, signals_by_account=signals)
            previews[step.step_id] = connector.preview(step_intent_preview(plan, step))
        except PermanentError as error:
            previews[step.step_id] = not_describable(name, error)
        except Exception:
            # A page that shows previews must not fail with one: say so, and leave the trace to the log.
            logger.exception("step preview failed", extra={"plan_id": str(plan.id), "step_id": str(step.step_id)})
            previews[step.step_id] = not_describable(name, PermanentError(UNDESCRIBABLE))
    return previews
