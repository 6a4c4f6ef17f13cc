"""Drafts: proposing a plan and editing a DRAFT (steps, objective, constraints)."""
import logging
import uuid
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from plans import ledger, policy
from plans.authority import Subject, Verb
from plans.errors import Conflict, NotFound, ValidationFailed
from plans.evaluator import expires_at_for
from plans.lifecycle import INVALID_TRANSITION
from plans.locking import lock_plan
from plans.models import Account, PlanStatus, PlanStep, RevenuePlan, RiskLevel
from plans.plan_types import get_action_type, get_plan_type_config, highest_risk
from plans.schemas import PlanDraftInput, StepInput, plan_to_schema
from plans.services import approvals
from plans.services.common import (
    SystemActor,
    actor_label,
    gate_refusal,
    require_authority,
    require_on_plan,
    require_version,
)

logger = logging.getLogger(__name__)


def _require_fresh_step_ids(step_inputs: list[StepInput], existing: dict) -> None:
    """A client-chosen step_id names a step of this plan or a new one: not another plan's, not twice."""
    given = [step_input.step_id for step_input in step_inputs if step_input.step_id is not None]
    if len(given) != len(set(given)):
        raise ValidationFailed("VALIDATION_ERROR", "Each step_id may appear only once in a plan.")
    new_ids = [step_id for step_id in given if step_id not in existing]
    if new_ids and PlanStep.objects.filter(step_id__in=new_ids).exists():
        raise ValidationFailed("VALIDATION_ERROR", "A step_id is already in use; omit step_id for a new step.")


def _build_steps(plan: RevenuePlan, step_inputs: list[StepInput]) -> list[PlanStep]:
    """Unsaved steps for `step_inputs`, keeping the identity (status, attempts) of known step_ids."""
    existing = {step.step_id: step for step in plan.steps.all()} if plan.pk and not plan._state.adding else {}
    _require_fresh_step_ids(step_inputs, existing)
    steps = []
    for sequence, step_input in enumerate(step_inputs):
        spec = get_action_type(step_input.action_type)
        step = existing.get(step_input.step_id) or PlanStep(plan=plan, step_id=step_input.step_id or uuid.uuid4())
        step.sequence = sequence
        step.action_type = step_input.action_type
        step.depends_on = [str(dependency) for dependency in step_input.depends_on]
        step.parameters = step_input.parameters
        step.required = spec.required if spec else False
        step.risk_level = spec.risk_level if spec else RiskLevel.LOW
        steps.append(step)
    plan.risk_level = highest_risk(step.risk_level for step in steps)
    return steps


def _require_structure(plan: RevenuePlan, steps: list[PlanStep], *, attempted: str) -> None:
    result = policy.validate_structure(plan_to_schema(plan, steps), policy.GateFacts(now=timezone.now()))
    if not result.valid:
        raise gate_refusal(result, attempted=attempted)


def _save_steps(plan: RevenuePlan, steps: list[PlanStep]) -> None:
    PlanStep.objects.filter(plan=plan).exclude(step_id__in=[step.step_id for step in steps]).delete()
    # The unique (plan, sequence) check is deferred to commit, so steps can swap places here.
    for step in steps:
        step.save()


def require_may_propose(*, account_id: UUID, actor) -> Account:
    """The account, if `actor` may propose plans for it (a SystemActor always may); else NotFound/NotAllowed.

    Called before a proposer runs too, so nothing about the account reaches a proposer (an LLM, say)
    on behalf of someone who could not save its draft."""
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        raise NotFound("NOT_FOUND", "The account does not exist.")
    if not isinstance(actor, SystemActor):
        require_authority(Verb.PROPOSE, user=actor, tenant_id=account.tenant_id,
                          subject=Subject(account_owner_id=account.owner_id), what="account")
    return account


def plan_propose(
    *,
    account_id: UUID,
    plan_type: str,
    draft: PlanDraftInput,
    actor,
    trigger: str = "manual",
    inputs_summary: dict | None = None,
) -> RevenuePlan:
    """Create a DRAFT plan for an account from the given steps. `actor` is a user or a SystemActor."""
    account = require_may_propose(account_id=account_id, actor=actor)
    config = get_plan_type_config(plan_type)
    now = timezone.now()
    plan = RevenuePlan(
        tenant_id=account.tenant_id,
        account=account,
        plan_type=plan_type,
        plan_type_version=config.version if config else 0,
        objective=draft.objective or (config.objective_template if config else plan_type),
        constraints={policy.HUMAN_TOUCH_CONSTRAINT: True, **draft.constraints},
        owner_id=account.owner_id,
        # An unknown plan type is refused just below; `now` only keeps the schema whole until then.
        expires_at=expires_at_for(config, renewal_date=account.renewal_date, created_at=now) if config else now,
        created_at=now,
        updated_at=now,
        created_by=actor_label(actor),
    )
    steps = _build_steps(plan, draft.steps)
    _require_structure(plan, steps, attempted="create")
    with transaction.atomic():
        plan.save(force_insert=True)
        _save_steps(plan, steps)
        ledger.plan_created(plan, actor=plan.created_by, trigger=trigger, inputs_summary=inputs_summary or {})
    logger.info(
        "plan proposed", extra={"plan_id": str(plan.id), "account_id": str(account.id), "actor": plan.created_by}
    )
    return plan


def plan_edit(*, plan_id: UUID, user, draft: PlanDraftInput, expected_version: int | None = None) -> RevenuePlan:
    """Change a DRAFT. The editor joins edited_by_since_approval (so may not approve it); a step whose
    content the edit changes loses its approval (APPROVAL_VOIDED, field by field); an unchanged step keeps it."""
    with transaction.atomic():
        plan = lock_plan(plan_id)
        require_on_plan(Verb.EDIT, user=user, plan=plan)
        if plan.plan_status != PlanStatus.DRAFT:
            raise Conflict(INVALID_TRANSITION, f"Only a DRAFT plan can be edited; this one is {plan.plan_status}. "
                                               "Revise it back to DRAFT first.")
        require_version(plan, expected_version)
        digest_before = approvals.digest(approvals.plan_content(plan, list(plan.steps.all())))
        changed_fields = ["steps"]
        if draft.objective is not None and draft.objective != plan.objective:
            plan.objective = draft.objective
            changed_fields.append("objective")
        if draft.constraints and draft.constraints != plan.constraints:
            plan.constraints = {**plan.constraints, **draft.constraints}
            changed_fields.append("constraints")
        steps = _build_steps(plan, draft.steps)
        _require_structure(plan, steps, attempted="edit")
        actor = ledger.user_actor(user)
        voided = _void_changed_approvals(steps)
        _save_steps(plan, steps)
        if user.pk not in plan.edited_by_since_approval:
            plan.edited_by_since_approval = [*plan.edited_by_since_approval, user.pk]
        plan.updated_at = timezone.now()
        plan.version += 1
        plan.save()
        ledger.plan_edited(plan, actor=actor, changed_fields=changed_fields)
        _ledger_plan_approval_voided(plan, steps, digest_before=digest_before, actor=actor)
        for step, changes in voided:
            ledger.approval_voided(plan, step=step, actor=actor, changes=changes,
                                   described=approvals.described(changes))
    return plan


def _void_changed_approvals(steps: list[PlanStep]) -> list[tuple[PlanStep, list[dict]]]:
    """Steps (unsaved) whose approval covered other content lose it: approved_at/by cleared, the record
    keeps what changed. Returns each voided step with its changes."""
    voided = []
    for step in steps:
        changes = approvals.step_changes(step)
        if changes:
            step.approval_record = approvals.voided_record(step, changes)
            step.approved_at, step.approved_by = None, None
            voided.append((step, changes))
    return voided


def _ledger_plan_approval_voided(plan: RevenuePlan, steps: list[PlanStep], *, digest_before: str,
                                 actor: str) -> None:
    """The edit that first makes a revised plan differ from what its last approval covered voids that
    approval in the ledger (later edits only change it further; one that restores it and a next that
    departs again are two voidings)."""
    record = plan.approval_record or {}
    if "digest" not in record or digest_before != record["digest"]:
        return
    content = approvals.plan_content(plan, steps)
    if approvals.digest(content) == record["digest"]:
        return
    changes = approvals.content_changes(record.get("content", {}), content)
    ledger.approval_voided(plan, actor=actor, changes=changes, described=approvals.described(changes))
