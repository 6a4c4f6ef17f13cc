"""A plan's steps: the one function that assigns a step's status, and the verbs people use on a step."""
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from plans import ledger
from plans.authority import Verb
from plans.errors import Conflict, NotFound, ValidationFailed
from plans.lifecycle import INVALID_TRANSITION, REQUIRED_STEP, STEP_NOT_AWAITING_APPROVAL, STEP_NOT_SKIPPABLE
from plans.locking import lock_plan
from plans.models import SKIPPABLE_STEP_STATUSES, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.services.common import require_on_plan, require_version, touch


def step_skip(*, plan_id: UUID, step_id: UUID, user, reason: str, expected_version: int | None = None) -> RevenuePlan:
    if not reason or not reason.strip():
        raise ValidationFailed("VALIDATION_ERROR", "Skipping a step needs a reason.")
    with transaction.atomic():
        plan = lock_plan(plan_id)
        require_on_plan(Verb.SKIP_STEP, user=user, plan=plan)
        require_version(plan, expected_version)
        step = step_of(plan, step_id)
        if plan.plan_status not in (PlanStatus.APPROVED, PlanStatus.ACTIVE, PlanStatus.PAUSED):
            raise Conflict(INVALID_TRANSITION, f"Steps of a {plan.plan_status} plan cannot be skipped.")
        if step.required:
            raise Conflict(REQUIRED_STEP, f"{step.action_type} is a required step and cannot be skipped.")
        if step.status not in SKIPPABLE_STEP_STATUSES:
            raise Conflict(STEP_NOT_SKIPPABLE, f"A {step.status} step cannot be skipped.")
        step.status, step.skip_reason = StepStatus.SKIPPED, reason.strip()
        step.save(update_fields=["status", "skip_reason"])
        touch(plan)
        ledger.step_skipped(plan, step_id=step.step_id, actor=ledger.user_actor(user), reason=step.skip_reason)
    return plan


def step_approve(*, plan_id: UUID, step_id: UUID, user, expected_version: int | None = None) -> RevenuePlan:
    """The human touch: a PENDING_APPROVAL step may run; the orchestrator runs it and marks it DONE."""
    with transaction.atomic():
        plan = lock_plan(plan_id)
        require_on_plan(Verb.APPROVE_STEP, user=user, plan=plan)
        require_version(plan, expected_version)
        step = step_of(plan, step_id)
        if plan.plan_status != PlanStatus.ACTIVE:
            raise Conflict(INVALID_TRANSITION, f"Steps of a {plan.plan_status} plan cannot be approved.")
        if step.status != StepStatus.PENDING_APPROVAL:
            raise Conflict(STEP_NOT_AWAITING_APPROVAL, f"The step is {step.status}, not waiting for approval.")
        step.status, step.approved_by, step.approved_at = StepStatus.PENDING, user, timezone.now()
        step.save(update_fields=["status", "approved_by", "approved_at"])
        touch(plan)
        ledger.step_approved(plan, step_id=step.step_id, actor=ledger.user_actor(user))
    return plan


def step_of(plan: RevenuePlan, step_id: UUID) -> PlanStep:
    step = PlanStep.objects.filter(plan=plan, step_id=step_id).first()
    if step is None:
        raise NotFound("NOT_FOUND", f"Step {step_id} is not part of this plan.")
    return step
