"""Recording an approved ActionIntent: the one way an intent comes to exist (the spine then executes it)."""
import uuid
from datetime import datetime
from uuid import UUID

from django.db import IntegrityError, transaction

from orchestrator.execution.models import ActionIntent
from plans.errors import ValidationFailed
from plans.plan_types import get_action_type


def effect_key_for(*, intent_id: UUID, plan_id: UUID | None, step_id: UUID | None) -> str:
    """Plan steps key by (plan, step), not attempt: a retry after an ambiguous failure finds the first effect."""
    return f"plan:{plan_id}:step:{step_id}" if plan_id else f"intent:{intent_id}"


def intent_create(
    *,
    tenant_id: UUID,
    account_id: UUID,
    action_type: str,
    expires_at: datetime,
    parameters: dict | None = None,
    approved_by=None,
    approved_by_id: int | None = None,
    approving_policy: str = "",
    plan_id: UUID | None = None,
    step_id: UUID | None = None,
    attempt: int | None = None,
    autonomy_decision: dict | None = None,
) -> ActionIntent:
    """Record an approved intent; for a plan step the (plan, step, attempt) key makes a repeat return the first."""
    if get_action_type(action_type) is None:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown action type {action_type!r}.")
    if approved_by is not None:
        approved_by_id = approved_by.pk
    if approved_by_id is None and not approving_policy:
        raise ValidationFailed("VALIDATION_ERROR", "An intent needs a person who approved it or an approving policy.")
    if (plan_id is None) != (step_id is None) or (plan_id is None) != (attempt is None):
        raise ValidationFailed("VALIDATION_ERROR", "plan_id, step_id and attempt go together.")
    intent_id = uuid.uuid4()
    fields = {
        "id": intent_id,
        "tenant_id": tenant_id,
        "account_id": account_id,
        "action_type": action_type,
        "parameters": parameters or {},
        "approved_by_id": approved_by_id,
        "approving_policy": approving_policy,
        "expires_at": expires_at,
        "effect_key": effect_key_for(intent_id=intent_id, plan_id=plan_id, step_id=step_id),
        "autonomy_decision": autonomy_decision or {},
    }
    if plan_id is None:
        return ActionIntent.objects.create(**fields)
    try:
        with transaction.atomic():
            return ActionIntent.objects.create(plan_id=plan_id, step_id=step_id, attempt=attempt, **fields)
    except IntegrityError:
        return ActionIntent.objects.get(plan_id=plan_id, step_id=step_id, attempt=attempt)
