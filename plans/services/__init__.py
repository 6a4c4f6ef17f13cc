"""The only code that changes a plan.

Every write: lock the rows (plans.locking), check authority, then the lifecycle, then the policy
gate, change the rows and append the ledger entry — in one transaction. A refused call changes
nothing; where the design says a refusal is itself audit-worthy (the gate said no), the refusal
entry is the only thing written.
"""
import logging
import uuid
from dataclasses import dataclass
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from plans import ledger, policy, selectors
from plans.authority import Subject, Verb, denial
from plans.errors import Conflict, DomainError, NotAllowed, NotFound, PolicyRefused, ValidationFailed
from plans.evaluator import Evaluation, Outcome, evaluate, expires_at_for
from plans.lifecycle import MOVES, Move, can_move
from plans.locking import lock_account, lock_account_then_plan, lock_open_plans_of_account, lock_plan
from plans.models import (
    SKIPPABLE_STEP_STATUSES,
    Account,
    AccountSignal,
    KillSwitch,
    Membership,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    RiskLevel,
    Role,
    StepStatus,
)
from plans.plan_types import PLAN_TYPES, get_action_type, get_plan_type_config, highest_risk
from plans.schemas import PlanDraftInput, StepInput, plan_to_schema

logger = logging.getLogger(__name__)

INVALID_TRANSITION = "INVALID_TRANSITION"
VERSION_CONFLICT = "VERSION_CONFLICT"
REQUIRED_STEP = "REQUIRED_STEP"
STEP_NOT_SKIPPABLE = "STEP_NOT_SKIPPABLE"
STEP_NOT_AWAITING_APPROVAL = "STEP_NOT_AWAITING_APPROVAL"
POLICY_GATE_REFUSED = "POLICY_GATE_REFUSED"
OWNERSHIP_CHANGED = "OWNERSHIP_CHANGED"



@dataclass(frozen=True)
class SystemActor:
    """The system acting on its own behalf, e.g. SystemActor("proposal_generator")."""

    component: str


def _actor_label(actor) -> str:
    return ledger.system_actor(actor.component) if isinstance(actor, SystemActor) else ledger.user_actor(actor)


# --- checks shared by the verbs --------------------------------------------------------------


def _require(verb: Verb, *, user, tenant_id: UUID, subject: Subject = Subject(), what: str = "object") -> Membership:
    """Authority: a non-member sees a 404 (another tenant's object does not exist for them)."""
    membership = selectors.membership_for(user, tenant_id)
    if membership is None:
        raise NotFound("NOT_FOUND", f"The {what} does not exist.")
    reason = denial(verb, role=Role(membership.role), user_id=user.pk, subject=subject)
    if reason is not None:
        raise NotAllowed(reason.code, reason.detail, [reason])
    return membership


def require_admin(*, user, tenant_id: UUID) -> Membership:
    """TENANT_ADMIN of this tenant, or NotFound (not a member) / NotAllowed (another role)."""
    return _require(Verb.ADMINISTER, user=user, tenant_id=tenant_id, what="tenant")


def _plan_subject(plan: RevenuePlan) -> Subject:
    return Subject(
        account_owner_id=plan.account.owner_id, plan_owner_id=plan.owner_id, plan_created_by=plan.created_by
    )


def _require_on_plan(verb: Verb, *, user, plan: RevenuePlan) -> Membership:
    return _require(verb, user=user, tenant_id=plan.tenant_id, subject=_plan_subject(plan), what="plan")


def _require_move(plan: RevenuePlan, move: Move) -> None:
    if not can_move(plan.plan_status, move):
        raise Conflict(
            INVALID_TRANSITION,
            f"A {plan.plan_status} plan cannot {move.value} (to {MOVES[move].target}).",
        )


def _require_version(plan: RevenuePlan, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != plan.version:
        raise Conflict(
            VERSION_CONFLICT,
            f"The plan is at version {plan.version}, not {expected_version}; reload it and try again.",
        )


def _gate_refusal(result: policy.PolicyResult, *, attempted: str) -> DomainError:
    reasons = list(result.reasons)
    if policy.CONFLICT_ACTIVE_PLAN_EXISTS in result.codes:
        return Conflict(policy.CONFLICT_ACTIVE_PLAN_EXISTS, reasons[0].detail, reasons)
    return PolicyRefused(POLICY_GATE_REFUSED, f"The policy gate refused to {attempted} the plan.", reasons)


def _commit_refusal_then_raise(error: DomainError):
    """Raised after the atomic block so the refusal's ledger entry commits; nothing else changed."""
    logger.info("plan write refused", extra={"code": error.code, "reasons": [r.code for r in error.reasons]})
    raise error


# --- the single place that assigns plan_status (STYLE §4) ------------------------------------


def _transition(
    plan: RevenuePlan,
    move: Move,
    *,
    actor: str,
    reason_code: str = "",
    explanation: str = "",
    facts: dict | None = None,
    steps: list[PlanStep] | None = None,
) -> RevenuePlan:
    """`steps`: the plan's steps as the caller already holds them (for the ledger's snapshot)."""
    _require_move(plan, move)
    rule = MOVES[move]
    now = timezone.now()
    from_status = plan.plan_status
    plan.plan_status = rule.target
    if rule.stamps:
        setattr(plan, rule.stamps, now)
    if rule.target in ledger.STOP_EVENTS:
        plan.stop_reason_code, plan.stop_reason_detail = reason_code, explanation
        plan.next_run_at = None
    else:
        plan.stop_reason_code = plan.stop_reason_detail = ""
        plan.next_run_at = now if rule.target in (PlanStatus.APPROVED, PlanStatus.ACTIVE) else None
    if rule.target == PlanStatus.DRAFT:
        plan.approved_at, plan.approved_by = None, None
    plan.updated_at = now
    plan.version += 1
    if rule.target == PlanStatus.ACTIVE:
        _save_into_active(plan)
    else:
        plan.save()
    ledger.plan_moved(
        plan,
        rule,
        from_status=from_status,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation or f"Plan moved from {from_status} to {rule.target}.",
        facts=facts or {},
        steps=steps,
    )
    logger.info(
        "plan moved",
        extra={"plan_id": str(plan.id), "from_status": from_status, "to_status": rule.target, "actor": actor},
    )
    return plan


def _save_into_active(plan: RevenuePlan) -> None:
    try:
        # A savepoint, so the partial unique index's verdict becomes a clean 409, not a broken transaction.
        with transaction.atomic():
            plan.save()
    except IntegrityError as error:
        if "one_active_plan_per_account_and_type" not in str(error):
            raise
        raise Conflict(
            policy.CONFLICT_ACTIVE_PLAN_EXISTS,
            "Another plan of this type is already ACTIVE for this account.",
        ) from None


# --- drafts ----------------------------------------------------------------------------------


def _build_steps(plan: RevenuePlan, step_inputs: list[StepInput]) -> list[PlanStep]:
    """Unsaved steps for `step_inputs`, keeping the identity (status, attempts) of known step_ids."""
    existing = {step.step_id: step for step in plan.steps.all()} if plan.pk and not plan._state.adding else {}
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
        raise _gate_refusal(result, attempted=attempted)


def _save_steps(plan: RevenuePlan, steps: list[PlanStep]) -> None:
    PlanStep.objects.filter(plan=plan).exclude(step_id__in=[step.step_id for step in steps]).delete()
    # The unique (plan, sequence) check is deferred to commit, so steps can swap places here.
    for step in steps:
        step.save()


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
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        raise NotFound("NOT_FOUND", "The account does not exist.")
    if not isinstance(actor, SystemActor):
        _require(Verb.PROPOSE, user=actor, tenant_id=account.tenant_id,
                 subject=Subject(account_owner_id=account.owner_id), what="account")
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
        created_by=_actor_label(actor),
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
    with transaction.atomic():
        plan = lock_plan(plan_id)
        _require_on_plan(Verb.EDIT, user=user, plan=plan)
        if plan.plan_status != PlanStatus.DRAFT:
            raise Conflict(INVALID_TRANSITION, f"Only a DRAFT plan can be edited; this one is {plan.plan_status}. "
                                               "Revise it back to DRAFT first.")
        _require_version(plan, expected_version)
        changed_fields = ["steps"]
        if draft.objective is not None and draft.objective != plan.objective:
            plan.objective = draft.objective
            changed_fields.append("objective")
        if draft.constraints and draft.constraints != plan.constraints:
            plan.constraints = {**plan.constraints, **draft.constraints}
            changed_fields.append("constraints")
        steps = _build_steps(plan, draft.steps)
        _require_structure(plan, steps, attempted="edit")
        _save_steps(plan, steps)
        plan.updated_at = timezone.now()
        plan.version += 1
        plan.save()
        ledger.plan_edited(plan, actor=ledger.user_actor(user), changed_fields=changed_fields)
    return plan


# --- people's verbs ---------------------------------------------------------------------------


def plan_approve(*, plan_id: UUID, user, expected_version: int | None = None) -> RevenuePlan:
    refusal = None
    with transaction.atomic():
        plan = lock_plan(plan_id)
        membership = _require_on_plan(Verb.APPROVE, user=user, plan=plan)
        _require_move(plan, Move.APPROVE)
        _require_version(plan, expected_version)
        now = timezone.now()
        result = policy.validate_for_approval(
            plan_to_schema(plan), selectors.gate_facts(plan, now=now, approver_role=Role(membership.role))
        )
        if not result.valid:
            ledger.policy_rejected(plan, actor=ledger.user_actor(user), attempted="approve", reasons=result.reasons)
            refusal = _gate_refusal(result, attempted="approve")
        else:
            plan.approved_by = user
            plan.plan_type_version = get_plan_type_config(plan.plan_type).version
            _transition(
                plan,
                Move.APPROVE,
                actor=ledger.user_actor(user),
                reason_code="APPROVED",
                explanation=f"Approved by {user.get_username()} ({membership.role}).",
                facts={"risk_level": plan.risk_level, "approver_role": membership.role},
            )
    if refusal:
        _commit_refusal_then_raise(refusal)
    return plan


def plan_pause(*, plan_id: UUID, user, reason: str = "", expected_version: int | None = None) -> RevenuePlan:
    with transaction.atomic():
        plan = lock_plan(plan_id)
        _require_on_plan(Verb.PAUSE, user=user, plan=plan)
        _require_move(plan, Move.PAUSE)
        _require_version(plan, expected_version)
        return _transition(
            plan, Move.PAUSE, actor=ledger.user_actor(user), reason_code="PAUSED_BY_USER",
            explanation=reason or f"Paused by {user.get_username()}.",
        )


def plan_resume(*, plan_id: UUID, user, expected_version: int | None = None) -> RevenuePlan:
    refusal = None
    with transaction.atomic():
        plan = lock_account_then_plan(plan_id)
        _require_on_plan(Verb.RESUME, user=user, plan=plan)
        _require_move(plan, Move.RESUME)
        _require_version(plan, expected_version)
        facts = selectors.gate_facts(plan, now=timezone.now())
        result = policy.evaluate_can_activate(plan_to_schema(plan), facts)
        if not result.can_activate:
            ledger.policy_rejected(plan, actor=ledger.user_actor(user), attempted="resume", reasons=result.reasons)
            refusal = _gate_refusal(result, attempted="resume")
        else:
            _transition(plan, Move.RESUME, actor=ledger.user_actor(user), reason_code="RESUMED",
                        explanation=f"Resumed by {user.get_username()}.")
    if refusal:
        _commit_refusal_then_raise(refusal)
    return plan


def plan_revise(*, plan_id: UUID, user, reason: str = "", expected_version: int | None = None) -> RevenuePlan:
    """Back to DRAFT so steps or action types can change; a new approval must follow."""
    with transaction.atomic():
        plan = lock_plan(plan_id)
        _require_on_plan(Verb.REVISE, user=user, plan=plan)
        _require_move(plan, Move.REVISE)
        _require_version(plan, expected_version)
        return _transition(
            plan, Move.REVISE, actor=ledger.user_actor(user), reason_code="REVISED",
            explanation=reason or f"Revised by {user.get_username()}; re-approval required.",
        )


def plan_abort(*, plan_id: UUID, user, reason: str, expected_version: int | None = None) -> RevenuePlan:
    if not reason or not reason.strip():
        raise ValidationFailed("VALIDATION_ERROR", "An abort needs a reason.",)
    with transaction.atomic():
        plan = lock_plan(plan_id)
        _require_on_plan(Verb.ABORT, user=user, plan=plan)
        _require_move(plan, Move.ABORT)
        _require_version(plan, expected_version)
        return _transition(plan, Move.ABORT, actor=ledger.user_actor(user), reason_code="ABORTED_BY_USER",
                           explanation=reason.strip())


def step_skip(*, plan_id: UUID, step_id: UUID, user, reason: str, expected_version: int | None = None) -> RevenuePlan:
    if not reason or not reason.strip():
        raise ValidationFailed("VALIDATION_ERROR", "Skipping a step needs a reason.")
    with transaction.atomic():
        plan = lock_plan(plan_id)
        _require_on_plan(Verb.SKIP_STEP, user=user, plan=plan)
        _require_version(plan, expected_version)
        step = _plan_step(plan, step_id)
        if plan.plan_status not in (PlanStatus.APPROVED, PlanStatus.ACTIVE, PlanStatus.PAUSED):
            raise Conflict(INVALID_TRANSITION, f"Steps of a {plan.plan_status} plan cannot be skipped.")
        if step.required:
            raise Conflict(REQUIRED_STEP, f"{step.action_type} is a required step and cannot be skipped.")
        if step.status not in SKIPPABLE_STEP_STATUSES:
            raise Conflict(STEP_NOT_SKIPPABLE, f"A {step.status} step cannot be skipped.")
        step.status, step.skip_reason = StepStatus.SKIPPED, reason.strip()
        step.save(update_fields=["status", "skip_reason"])
        _touch(plan)
        ledger.step_skipped(plan, step_id=step.step_id, actor=ledger.user_actor(user), reason=step.skip_reason)
    return plan


def step_approve(*, plan_id: UUID, step_id: UUID, user, expected_version: int | None = None) -> RevenuePlan:
    """The human touch: a PENDING_APPROVAL step may run; the orchestrator runs it and marks it DONE."""
    with transaction.atomic():
        plan = lock_plan(plan_id)
        _require_on_plan(Verb.APPROVE_STEP, user=user, plan=plan)
        _require_version(plan, expected_version)
        step = _plan_step(plan, step_id)
        if plan.plan_status != PlanStatus.ACTIVE:
            raise Conflict(INVALID_TRANSITION, f"Steps of a {plan.plan_status} plan cannot be approved.")
        if step.status != StepStatus.PENDING_APPROVAL:
            raise Conflict(STEP_NOT_AWAITING_APPROVAL, f"The step is {step.status}, not waiting for approval.")
        step.status, step.approved_by, step.approved_at = StepStatus.PENDING, user, timezone.now()
        step.save(update_fields=["status", "approved_by", "approved_at"])
        _touch(plan)
        ledger.step_approved(plan, step_id=step.step_id, actor=ledger.user_actor(user))
    return plan


def _plan_step(plan: RevenuePlan, step_id: UUID) -> PlanStep:
    step = PlanStep.objects.filter(plan=plan, step_id=step_id).first()
    if step is None:
        raise NotFound("NOT_FOUND", f"Step {step_id} is not part of this plan.")
    return step


def _touch(plan: RevenuePlan) -> None:
    """A change to a step is a change to the plan: bump its version, look at it again now."""
    plan.updated_at = timezone.now()
    plan.version += 1
    if plan.plan_status == PlanStatus.ACTIVE:
        plan.next_run_at = plan.updated_at
    plan.save(update_fields=["updated_at", "version", "next_run_at"])


def account_transfer(*, account_id: UUID, new_owner_id: int, user) -> Account:
    """Ownership change: open plans follow the account; ACTIVE ones pause until someone resumes them."""
    with transaction.atomic():
        account = lock_account(account_id)
        _require(Verb.TRANSFER_ACCOUNT, user=user, tenant_id=account.tenant_id, what="account")
        new_owner = get_user_model().objects.filter(pk=new_owner_id).first()
        new_membership = new_owner and selectors.membership_for(new_owner, account.tenant_id)
        if not new_membership or new_membership.role == Role.VIEWER:
            raise ValidationFailed(
                "VALIDATION_ERROR", "The new owner must be an active member of the tenant who may own accounts."
            )
        old_owner_id = account.owner_id
        if old_owner_id == new_owner.pk:
            return account
        account.owner = new_owner
        account.save(update_fields=["owner", "updated_at"])
        actor = ledger.user_actor(user)
        plans = lock_open_plans_of_account(account.id)
        for plan in plans:
            plan.owner = new_owner
            if plan.plan_status == PlanStatus.ACTIVE:
                _transition(
                    plan, Move.PAUSE, actor=actor, reason_code=OWNERSHIP_CHANGED,
                    explanation=f"The account moved from user {old_owner_id} to user {new_owner.pk}; "
                                "the new owner or an approver must resume the plan.",
                    facts={"old_owner_id": old_owner_id, "new_owner_id": new_owner.pk},
                )
            else:
                _touch(plan)
                plan.save(update_fields=["owner"])
                ledger.plan_owner_changed(plan, actor=actor, old_owner_id=old_owner_id, new_owner_id=new_owner.pk)
        ledger.account_owner_changed(
            account, actor=actor, old_owner_id=old_owner_id, new_owner_id=new_owner.pk,
            plan_ids=[plan.id for plan in plans],
        )
    return account


def kill_switch_set(*, tenant_id: UUID, user, engaged: bool, reason: str, action_type: str = "") -> KillSwitch:
    """Flip a tenant-wide or per-action-type kill switch; takes effect on the next check, no redeploy."""
    if action_type and get_action_type(action_type) is None:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown action type {action_type!r}.")
    with transaction.atomic():
        _require(Verb.ADMINISTER, user=user, tenant_id=tenant_id, what="tenant")
        switch, _ = KillSwitch.objects.select_for_update().get_or_create(tenant_id=tenant_id, action_type=action_type)
        if switch.engaged == engaged:
            return switch
        switch.engaged, switch.reason, switch.updated_by = engaged, reason, ledger.user_actor(user)
        switch.save()
        ledger.kill_switch_flipped(tenant_id, actor=switch.updated_by, action_type=action_type, engaged=engaged,
                                   reason=reason)
    return switch


def signal_record(
    *, account_id: UUID, signal_type: str, observed_at=None, payload: dict | None = None
) -> AccountSignal:
    """Record something observed about an account (a renewal committed, a support risk ...).

    A signal that may meet an ACTIVE plan's objective makes the orchestrator look at that plan now:
    the tick only visits plans whose next_run_at is due, and a plan waiting for a person has none, so
    without this a renewal committed meanwhile would go unnoticed until the plan expired. The UPDATE
    waits for an advance holding the plan's row lock, so a concurrent advance cannot clear the wake-up.
    """
    now = timezone.now()
    woken_plan_types = [
        config.plan_type for config in PLAN_TYPES.values() if signal_type in config.objective_signal_types
    ]
    with transaction.atomic():
        signal = AccountSignal.objects.create(
            account_id=account_id, signal_type=signal_type, observed_at=observed_at or now, payload=payload or {}
        )
        if woken_plan_types:
            RevenuePlan.objects.filter(
                account_id=account_id, plan_type__in=woken_plan_types, plan_status=PlanStatus.ACTIVE
            ).update(next_run_at=now)
    return signal


# --- the system's own moves (the orchestrator only calls these) -------------------------------


def plan_activate(*, plan_id: UUID, component: str = "orchestrator") -> RevenuePlan:
    """APPROVED → ACTIVE when the gate says can_activate; otherwise ledger why (once per change)."""
    with transaction.atomic():
        plan = lock_account_then_plan(plan_id)
        result = plan_activate_locked(plan, steps=list(plan.steps.all()), component=component)
    if not result.can_activate:
        _commit_refusal_then_raise(_gate_refusal(result, attempted="activate"))
    return plan


def plan_activate_locked(
    plan: RevenuePlan, *, steps: list[PlanStep], component: str, engaged_switches: frozenset[str] | None = None
) -> policy.PolicyResult:
    """plan_activate's work for a caller holding the account's and then the plan's row lock (the
    orchestrator activates and starts the first steps in one transaction). A refusal is ledgered
    (once per change of reasons) and returned, not raised: the caller decides what to commit."""
    _require_move(plan, Move.ACTIVATE)
    actor = ledger.system_actor(component)
    facts = selectors.gate_facts(plan, now=timezone.now(), engaged_switches=engaged_switches)
    result = policy.evaluate_can_activate(plan_to_schema(plan, steps), facts)
    if not result.can_activate:
        ledger.activation_blocked(plan, actor=actor, reasons=result.reasons)
    else:
        _transition(plan, Move.ACTIVATE, actor=actor, reason_code="GATE_ALLOWED",
                    explanation="The policy gate allowed activation: no conflicting plan, preconditions met.",
                    facts={"gate_reasons": [], "execution_killed_by": facts.execution_killed_by}, steps=steps)
    return result


def _settle(plan_id: UUID, *, expected: Outcome, component: str) -> RevenuePlan:
    with transaction.atomic():
        plan = lock_plan(plan_id)
        _require_move(plan, _SETTLE_MOVES[expected])
        steps = list(plan.steps.all())
        evaluation = evaluate(
            plan_to_schema(plan, steps),
            signals=selectors.objective_signals(plan),
            renewal_date=plan.account.renewal_date,
            now=timezone.now(),
        )
        if evaluation.outcome != expected:
            raise PolicyRefused(
                policy.PRECONDITION_FAILED,
                f"The evaluator does not say {expected.value} for this plan (it says {evaluation.outcome.value}).",
            )
        return plan_settle_locked(plan, evaluation, steps=steps, component=component)


def plan_settle_locked(plan: RevenuePlan, evaluation: Evaluation, *, steps: list[PlanStep],
                       component: str) -> RevenuePlan:
    """COMPLETE or EXPIRE as `evaluation` (made under the plan's row lock, which the caller still holds) says."""
    move = _SETTLE_MOVES[evaluation.outcome]
    if move == Move.COMPLETE:
        plan.completion_reason = evaluation.reason
    return _transition(
        plan, move, actor=ledger.system_actor(component), reason_code=evaluation.reason,
        explanation=_SETTLE_EXPLANATIONS[evaluation.reason], facts=evaluation.facts, steps=steps,
    )


_SETTLE_MOVES = {Outcome.COMPLETE: Move.COMPLETE, Outcome.EXPIRE: Move.EXPIRE}
_SETTLE_EXPLANATIONS = {
    "objective_met": "The objective was met: the renewal was committed before day -30.",
    "all_steps_done": "Every required step succeeded and every other step finished.",
    "expired": "The plan's time window closed before it finished.",
}


def plan_complete(*, plan_id: UUID, component: str = "evaluator") -> RevenuePlan:
    return _settle(plan_id, expected=Outcome.COMPLETE, component=component)


def plan_expire(*, plan_id: UUID, component: str = "evaluator") -> RevenuePlan:
    return _settle(plan_id, expected=Outcome.EXPIRE, component=component)


def plan_pause_by_policy(
    *, plan_id: UUID, component: str, reason_code: str, explanation: str, facts: dict | None = None
) -> RevenuePlan:
    with transaction.atomic():
        plan = lock_plan(plan_id)
        return _transition(plan, Move.PAUSE, actor=ledger.system_actor(component), reason_code=reason_code,
                           explanation=explanation, facts=facts)


def plan_abort_by_policy(
    *, plan_id: UUID, component: str, reason_code: str, explanation: str, facts: dict | None = None
) -> RevenuePlan:
    with transaction.atomic():
        plan = lock_plan(plan_id)
        return _transition(plan, Move.ABORT, actor=ledger.system_actor(component), reason_code=reason_code,
                           explanation=explanation, facts=facts)
