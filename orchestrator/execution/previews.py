"""The describer behind plans.previews: what each step's next attempt would do, told by the connector
that would do it, with the code that builds what it sends (so a preview cannot drift from the effect).

A few reads for any number of steps: their plans (the caller's when it loaded them with their accounts, as
a page does; else read, tenant, account and owner joined), the tenants and account owners a loaded plan lacks,
the tenants' routes and connector configs, and — when a renewal brief is among them — the accounts' latest
signals.
Nothing is sent and nothing is written: the intents described are unsaved (intents.step_intent_preview).
"""
import logging
from uuid import UUID

from django.contrib.auth import get_user_model

from orchestrator.execution.connectors import connector_named, routing_table
from orchestrator.execution.connectors.base import PermanentError, not_describable
from orchestrator.execution.connectors.internal import KIND_BY_ACTION_TYPE, recent_signals
from orchestrator.execution.intents import step_intent_preview
from orchestrator.execution.models import ConnectorName, InternalRecordKind
from plans.lifecycle import TERMINAL
from plans.models import Account, PlanStep, RevenuePlan, Tenant

logger = logging.getLogger(__name__)

UNDESCRIBABLE = "This step could not be described; what it sends will be in the ledger once it runs."


def describe_steps(steps: list[PlanStep]) -> dict[UUID, dict]:
    """step_id -> preview (plans.previews' shape) for each of `steps` whose plan has not ended."""
    plans = _plans_of(steps)
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


def _plans_of(steps: list[PlanStep]) -> dict[UUID, RevenuePlan]:
    """plan_id -> the steps' plans, each with its tenant and its account's owner loaded.

    A plan the caller loaded with its account (a page: its prefetch set step.plan) is used as it is, its
    tenant and owner filled in by one read each when not loaded: re-reading a page of 50 plans, three joins
    and four objects a row, was a third of what the page's previews cost. Other steps' plans are read.
    """
    plans = {step.plan_id: step.plan for step in steps
             if PlanStep.plan.is_cached(step) and RevenuePlan.account.is_cached(step.plan)}
    unread = {step.plan_id for step in steps} - plans.keys()
    if unread:
        plans.update(RevenuePlan.objects.select_related("tenant", "account__owner").in_bulk(unread))
    without_tenant = [plan for plan in plans.values() if not RevenuePlan.tenant.is_cached(plan)]
    if without_tenant:
        tenants = Tenant.objects.in_bulk({plan.tenant_id for plan in without_tenant})
        for plan in without_tenant:
            plan.tenant = tenants[plan.tenant_id]
    without_owner = [plan.account for plan in plans.values()
                     if plan.account.owner_id is not None and not Account.owner.is_cached(plan.account)]
    if without_owner:
        owners = get_user_model().objects.in_bulk({account.owner_id for account in without_owner})
        for account in without_owner:
            account.owner = owners.get(account.owner_id)  # gone since the page was read: none
    return plans
