"""Reads of the execution spine for the surfaces above it, each scoped by plans.selectors' visibility rule."""
from uuid import UUID

from django.db.models import QuerySet

from orchestrator.execution.models import ActionIntent
from plans.errors import NotFound
from plans.selectors import visible_to


def intents_for_user(user) -> QuerySet[ActionIntent]:
    """Intents of the caller's tenants, newest first, with their connector tries (one extra query a page)."""
    return (
        visible_to(ActionIntent.objects.select_related("plan"), user)  # the plan: its status ends `outcome`
        .prefetch_related("execution_attempts")
        .order_by("-created_at", "id")
    )


def latest_step_executions(plans) -> dict[tuple[UUID, UUID], ActionIntent]:
    """(plan_id, step_id) -> the intent of the step's current attempt, for all `plans` in one query.

    The current attempt is `step.attempts` (DESIGN §3.3: one intent per (plan, step, attempt)).
    Earlier attempts are fetched too: retry_limit of them per series (a person's retry starts a new one).
    """
    current_attempts = {
        (plan.id, step.step_id): step.attempts for plan in plans for step in plan.steps.all() if step.attempts
    }
    if not current_attempts:
        return {}
    intents = ActionIntent.objects.filter(plan_id__in={plan_id for plan_id, _ in current_attempts})
    return {
        (intent.plan_id, intent.step_id): intent
        for intent in intents
        if current_attempts.get((intent.plan_id, intent.step_id)) == intent.attempt
    }


def intent_for_user(user, intent_id) -> ActionIntent:
    """One intent of the caller's tenants (with its account and tenant), or NotFound: another tenant's is unknown."""
    intent = visible_to(ActionIntent.objects.select_related("account__owner", "tenant"), user).filter(
        pk=intent_id).first()
    if intent is None:
        raise NotFound("NOT_FOUND", "The action does not exist.")
    return intent
