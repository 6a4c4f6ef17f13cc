"""A plan's steps: the one function that assigns a step's status, and the verbs people use on a step."""
import logging
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from plans import ledger
from plans.authority import Verb
from plans.errors import Conflict, NotFound, ValidationFailed
from plans.lifecycle import STEP_MOVES, StepMove, step_move_refusal
from plans.locking import lock_account_then_plan, lock_plan
from plans.models import PauseKind, PauseLayer, PlanStep, RevenuePlan, StepStatus
from plans.services import approvals
from plans.services.common import require_on_plan, require_version, touch
from plans.services.layers import open_layers
from revplan.rows import update_row

logger = logging.getLogger(__name__)


# --- the single place that assigns a step's status (STYLE §4) ----------------------------------


def step_transition(step: PlanStep, move: StepMove, *, plan: RevenuePlan, changes: dict | None = None) -> PlanStep:
    """Check plans.lifecycle.STEP_MOVES, make the move (with `changes`: the other columns it sets), save.

    The caller holds the plan's row lock (every step write does) and writes the move's ledger entry
    in the same transaction: each move's entry carries its own facts — the skip's reason, the
    autonomy decision — and an attempt's outcome is the execution spine's ACTION_EXECUTED or
    ACTION_FAILED entry.
    """
    refusal = step_move_refusal(move, plan_status=plan.plan_status, step_status=step.status, required=step.required)
    if refusal is not None:
        raise Conflict(refusal.code, refusal.detail)
    changes = changes or {}
    from_status, step.status = step.status, STEP_MOVES[move].target
    for name, value in changes.items():
        setattr(step, name, value)
    update_row(step, ["status", *changes])
    logger.info("step moved", extra={"plan_id": str(plan.id), "step_id": str(step.step_id),
                                     "from_status": from_status, "to_status": step.status})
    return step


# --- people's verbs ------------------------------------------------------------------------------


def step_skip(*, plan_id: UUID, step_id: UUID, user, reason: str, expected_version: int | None = None) -> RevenuePlan:
    """A person skips an optional step. Skipping one that FAILED at its limit lifts the RETRY_LIMIT
    layer it holds the plan by; the plan runs again if nothing else holds it."""
    # pauses imports moves, which imports this module: a late import breaks the cycle.
    from plans.services.pauses import pause_layers_lift_locked

    if not reason or not reason.strip():
        raise ValidationFailed("VALIDATION_ERROR", "Skipping a step needs a reason.")
    with transaction.atomic():
        # The account first: lifting the last layer may move the plan into ACTIVE (the conflict rule).
        plan = lock_account_then_plan(plan_id)
        require_on_plan(Verb.SKIP_STEP, user=user, plan=plan)
        require_version(plan, expected_version)
        step = step_of(plan, step_id)
        failed = step.status == StepStatus.FAILED
        step_transition(step, StepMove.SKIP, plan=plan, changes={"skip_reason": reason.strip()})
        touch(plan)
        actor = ledger.user_actor(user)
        ledger.step_skipped(plan, step_id=step.step_id, actor=actor, reason=step.skip_reason)
        held = retry_limit_layers_of(plan, step) if failed else []
        if held:
            pause_layers_lift_locked(plan, held, actor=actor,
                                     why=f"{user.get_username()} skipped step {step.sequence + 1} ({step.action_type})")
    return plan


def step_retry(*, plan_id: UUID, step_id: UUID, user, reason: str = "",
               expected_version: int | None = None) -> RevenuePlan:
    """A person redrives a FAILED step: PENDING again with a new series of retry_limit attempts (numbers
    keep counting, so each (plan, step, attempt) stays unique), and the step's RETRY_LIMIT layer lifted;
    the plan runs again if nothing else holds it. The step's approval still holds: a retry changes
    nothing the approval covered. Its last error stays until the next attempt's outcome replaces it."""
    # pauses imports moves, which imports this module: a late import breaks the cycle.
    from plans.services.pauses import pause_layers_lift_locked

    with transaction.atomic():
        # The account first: lifting the last layer may move the plan into ACTIVE (the conflict rule).
        plan = lock_account_then_plan(plan_id)
        require_on_plan(Verb.RETRY_STEP, user=user, plan=plan)
        require_version(plan, expected_version)
        step = step_of(plan, step_id)
        step_transition(step, StepMove.RETRY, plan=plan,
                        changes={"attempts_before_series": step.attempts, "next_attempt_at": None})
        touch(plan)
        actor = ledger.user_actor(user)
        ledger.step_retried(plan, step=step, actor=actor, reason=reason.strip())
        held = retry_limit_layers_of(plan, step)
        if held:
            pause_layers_lift_locked(plan, held, actor=actor,
                                     why=f"{user.get_username()} retried step {step.sequence + 1} ({step.action_type})")
    return plan


def retry_limit_layers_of(plan: RevenuePlan, step: PlanStep) -> list[PauseLayer]:
    """The open RETRY_LIMIT layers `step` holds the plan by: the one scoped to it, and an unscoped one
    (set before layers named their step) when no other step of the plan is FAILED."""
    others_failed = PlanStep.objects.filter(plan=plan, status=StepStatus.FAILED).exclude(pk=step.pk).exists()
    return [layer for layer in open_layers(plan) if layer.kind == PauseKind.RETRY_LIMIT
            and (layer.scope == str(step.step_id) or (layer.scope == "" and not others_failed))]


def step_approve(*, plan_id: UUID, step_id: UUID, user, expected_version: int | None = None) -> RevenuePlan:
    """The human touch: a PENDING_APPROVAL step may run; the orchestrator runs it and marks it DONE.

    The approval covers the step's content as it is now (action type, parameters, dependencies, risk):
    its digest is recorded, and a later change of any of them voids it (plans.services.drafts)."""
    with transaction.atomic():
        plan = lock_plan(plan_id)
        require_on_plan(Verb.APPROVE_STEP, user=user, plan=plan)
        require_version(plan, expected_version)
        step = step_of(plan, step_id)
        now = timezone.now()
        step_transition(step, StepMove.APPROVE, plan=plan, changes={
            "approved_by": user, "approved_at": now,
            "approval_record": approvals.step_record(step, approved_by_id=user.pk, approved_at=now)})
        touch(plan)
        ledger.step_approved(plan, step_id=step.step_id, actor=ledger.user_actor(user))
    return plan


def step_of(plan: RevenuePlan, step_id: UUID) -> PlanStep:
    step = PlanStep.objects.filter(plan=plan, step_id=step_id).first()
    if step is None:
        raise NotFound("NOT_FOUND", f"Step {step_id} is not part of this plan.")
    return step
