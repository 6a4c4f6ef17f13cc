"""Recording an approved ActionIntent: the one way an intent comes to exist (the spine then executes it)."""
import uuid
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from orchestrator.execution.models import ActionIntent, IntentStatus
from plans.errors import ValidationFailed
from plans.models import PlanStep, RevenuePlan
from plans.plan_types import get_action_type
from revplan.rows import insert_columns, insert_values, inserted


def effect_key_for(*, intent_id: UUID, plan_id: UUID | None, step_id: UUID | None) -> str:
    """Plan steps key by (plan, step), not attempt: a retry after an ambiguous failure finds the first effect."""
    return f"plan:{plan_id}:step:{step_id}" if plan_id else f"intent:{intent_id}"


def intent_fields(*, tenant_id: UUID, account_id: UUID, action_type: str, expires_at: datetime,
                  parameters: dict | None = None, plan_id: UUID | None = None, step_id: UUID | None = None) -> dict:
    """An intent's identity and what it will do: its id, its effect key and the fields a connector reads."""
    intent_id = uuid.uuid4()
    return {
        "id": intent_id,
        "tenant_id": tenant_id,
        "account_id": account_id,
        "action_type": action_type,
        "parameters": parameters or {},
        "expires_at": expires_at,
        "plan_id": plan_id,
        "step_id": step_id,
        "effect_key": effect_key_for(intent_id=intent_id, plan_id=plan_id, step_id=step_id),
    }


def step_intent_fields(plan: RevenuePlan, step: PlanStep) -> dict:
    """What a plan step's intent is made of: the engine's attempts and the previews both start here."""
    return {"tenant_id": plan.tenant_id, "account_id": plan.account_id, "action_type": step.action_type,
            "parameters": step.parameters, "expires_at": plan.expires_at, "plan_id": plan.id, "step_id": step.step_id}


def step_intent_preview(plan: RevenuePlan, step: PlanStep) -> ActionIntent:
    """The intent the step's next attempt would create, unsaved (nothing written): what a preview describes.

    Its plan, tenant and account are the loaded `plan`'s, so describing it reads nothing more; its
    created_at is None (the connectors then take "now", as the attempt made now would).
    """
    intent = ActionIntent(**intent_fields(**step_intent_fields(plan, step)))
    intent.plan, intent.tenant, intent.account = plan, plan.tenant, plan.account
    return intent


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
    claimed_by: UUID | None = None,
    connector: str = "",
    plan_locked: bool = False,
) -> ActionIntent:
    """Record an approved intent; for a plan step the (plan, step, attempt) key makes a repeat return the first.

    `claimed_by`: a lease token — the intent is created EXECUTING, claimed by the caller, who carries it
    out at once (ExecutionService.execute_claimed) rather than sending it to a worker; a repeat returns
    the first row, whose `lease_token` then is not the caller's. With `connector` (the one the caller
    built for it) its first try is counted on the row already, as the execution's renewal before a try
    would: a worker that dies before its outcome leaves the try counted. `plan_locked`: the caller holds
    the plan's row lock (the engine), under which nobody else starts an attempt of its steps — so no
    savepoint is kept to catch a repeat; the unique key still refuses one (and the transaction with it) —
    and the caller starts this attempt of the step: the step row counts it (attempts, no next_attempt_at)
    in the intent's own statement.
    """
    if get_action_type(action_type) is None:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown action type {action_type!r}.")
    if approved_by is not None:
        approved_by_id = approved_by.pk
    if approved_by_id is None and not approving_policy:
        raise ValidationFailed("VALIDATION_ERROR", "An intent needs a person who approved it or an approving policy.")
    if (plan_id is None) != (step_id is None) or (plan_id is None) != (attempt is None):
        raise ValidationFailed("VALIDATION_ERROR", "plan_id, step_id and attempt go together.")
    fields = {
        **intent_fields(tenant_id=tenant_id, account_id=account_id, action_type=action_type, expires_at=expires_at,
                        parameters=parameters, plan_id=plan_id, step_id=step_id),
        "approved_by_id": approved_by_id,
        "approving_policy": approving_policy,
        "autonomy_decision": autonomy_decision or {},
    }
    if claimed_by is not None:
        now = timezone.now()
        fields.update(status=IntentStatus.EXECUTING, lease_token=claimed_by, started_at=now, deliveries=1,
                      lease_expires_at=now + timedelta(seconds=settings.REVPLAN_EXECUTION_LEASE_SECONDS))
        if connector:
            fields.update(connector=connector, attempts=1)
    if plan_id is None:
        return ActionIntent.objects.create(**fields)
    if plan_locked:
        return _create_step_attempt(ActionIntent(attempt=attempt, **fields))
    try:
        with transaction.atomic():
            return ActionIntent.objects.create(attempt=attempt, **fields)
    except IntegrityError:
        return ActionIntent.objects.get(plan_id=plan_id, step_id=step_id, attempt=attempt)


def _create_step_attempt(intent: ActionIntent) -> ActionIntent:
    """Insert `intent`, the step's attempt `intent.attempt`, and count it on the step row: one round trip for
    the two writes every step start makes (intent_create(plan_locked=True))."""
    fields, columns, values = insert_columns(ActionIntent, with_pk=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH counted AS (UPDATE {PlanStep._meta.db_table} SET attempts = %s, next_attempt_at = NULL "
            f"WHERE step_id = %s AND plan_id = %s RETURNING 1) "
            f"INSERT INTO {ActionIntent._meta.db_table} ({columns}) SELECT {values} FROM counted",
            [intent.attempt, intent.step_id, intent.plan_id, *insert_values(fields, intent)])
        if cursor.rowcount != 1:
            raise ValidationFailed("VALIDATION_ERROR", f"Plan {intent.plan_id} has no step {intent.step_id}.")
    inserted(intent)
    return intent
