"""A plan's moves through its lifecycle: the one function that assigns plan_status, and the verbs
people use to move a plan (approve, pause, resume, revise, abort)."""
import logging
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from plans import ledger, policy, selectors
from plans.authority import Verb
from plans.errors import Conflict, ValidationFailed
from plans.lifecycle import MOVES, TERMINAL, Move, StepMove
from plans.locking import lock_account_then_plan, lock_plan
from plans.models import PlanStatus, PlanStep, RevenuePlan, Role, StepStatus
from plans.schemas import plan_to_schema
from plans.services import approvals
from plans.services.common import (
    gate_refusal,
    raise_committed_refusal,
    require_move,
    require_on_plan,
    require_version,
)
from plans.services.layers import layers_lift, open_layers
from plans.services.steps import step_transition
from revplan.rows import update_row

logger = logging.getLogger(__name__)


# --- the single place that assigns plan_status (STYLE §4) ------------------------------------


def plan_transition(
    plan: RevenuePlan,
    move: Move,
    *,
    actor: str,
    reason_code: str = "",
    explanation: str = "",
    facts: dict | None = None,
    steps: list[PlanStep] | None = None,
    changes: dict | None = None,
) -> RevenuePlan:
    """`steps`: the plan's steps as the caller already holds them (for the ledger's snapshot). `changes`: the
    other columns the move sets (as step_transition's), over the move's own (a caller's next_run_at wins over the
    move's); only the columns a move writes are saved."""
    require_move(plan, move)
    rule = MOVES[move]
    now = timezone.now()
    from_status = plan.plan_status
    changes = changes or {}
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
    for name, value in changes.items():
        setattr(plan, name, value)
    saved = [*_MOVED_COLUMNS, *([rule.stamps] if rule.stamps else []), *changes]
    if rule.target == PlanStatus.ACTIVE:
        _save_into_active(plan, saved)
    else:
        update_row(plan, saved)
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
    if rule.target == PlanStatus.DRAFT or rule.target in TERMINAL:
        _close_what_waited(plan, actor=actor, why=explanation or f"the plan moved to {rule.target}", steps=steps,
                           held=from_status != PlanStatus.ACTIVE)
    logger.info(
        "plan moved",
        extra={"plan_id": str(plan.id), "from_status": from_status, "to_status": rule.target, "actor": actor},
    )
    return plan


# What every move writes (plan_transition): a full-row save rewrote the plan's JSON columns on every move.
_MOVED_COLUMNS = ("plan_status", "stop_reason_code", "stop_reason_detail", "next_run_at", "approved_at",
                  "approved_by", "updated_at", "version")


def _close_what_waited(plan: RevenuePlan, *, actor: str, why: str, steps: list[PlanStep] | None,
                       held: bool) -> None:
    """A plan back in DRAFT or finished is held by no layer any more; a finished plan's waiting steps
    are SKIPPED with its reason (DESIGN §3.2). A step whose attempt is still out (started, outcome
    not recorded) is left for that outcome: what happened in the world is still recorded. `held`: the
    plan may have had open layers — not when it was ACTIVE (a layer pauses an ACTIVE plan, and a plan
    resumes only once its last layer is lifted), as most plans are when they finish: no read of them."""
    layers = open_layers(plan) if held else []
    if layers:
        layers_lift(plan, layers, actor=actor, why=f"the plan is {plan.plan_status}: {why.rstrip('.')}")
    if plan.plan_status not in TERMINAL:
        return
    for step in (steps if steps is not None else list(plan.steps.all())):
        if step.status in (StepStatus.PENDING, StepStatus.PENDING_APPROVAL) and not step.attempt_out:
            reason = f"The plan was {plan.plan_status}: {why.rstrip('.')}."
            step_transition(step, StepMove.CLOSE, plan=plan, changes={"skip_reason": reason[:2000],
                                                                      "closed_with_plan": True})
            ledger.step_closed(plan, step=step, actor=actor)


# No other plan of the account and type is ACTIVE: every move into ACTIVE holds the account's row lock first, so
# the statement sees one that committed before it.
_NO_OTHER_ACTIVE = (f"NOT EXISTS (SELECT 1 FROM {RevenuePlan._meta.db_table} other WHERE other.account_id = %s "
                    "AND other.plan_type = %s AND other.plan_status = %s AND other.id <> %s)")


def _save_into_active(plan: RevenuePlan, columns: list[str]) -> None:
    """The move's columns, written only while no other plan of the account and type is ACTIVE (a clean 409, the
    transaction intact, with no savepoint: two statements less a move). The partial unique index stays the last
    word for a writer that skipped the account's lock: also a 409, with the transaction lost."""
    try:
        saved = update_row(plan, columns, condition=(_NO_OTHER_ACTIVE, [
            plan.account_id, plan.plan_type, PlanStatus.ACTIVE, plan.pk]))
    except IntegrityError as error:
        if "one_active_plan_per_account_and_type" not in str(error):
            raise
        saved = False
    if not saved:
        raise Conflict(
            policy.CONFLICT_ACTIVE_PLAN_EXISTS,
            "Another plan of this type is already ACTIVE for this account.",
        )


# --- people's verbs ---------------------------------------------------------------------------


def plan_approve(*, plan_id: UUID, user, expected_version: int | None = None) -> RevenuePlan:
    """DRAFT → APPROVED, recording what the approval covers: the content's digest and the facts it is
    given on (plans.services.approvals). Not by the plan's creator, nor by anyone who edited it since
    its last approval; refused while another plan of the type is APPROVED or ACTIVE for the account."""
    refusal = None
    with transaction.atomic():
        # The account first: two approvals for one account queue here, so neither can miss the other
        # in the conflict check.
        plan = lock_account_then_plan(plan_id)
        membership = require_on_plan(Verb.APPROVE, user=user, plan=plan)
        require_move(plan, Move.APPROVE)
        require_version(plan, expected_version)
        now = timezone.now()
        steps = list(plan.steps.all())
        facts = selectors.gate_facts(plan, now=now, approver_role=Role(membership.role),
                                     conflicts_with=selectors.CONFLICTS_AT_APPROVAL)
        result = policy.validate_for_approval(plan_to_schema(plan, steps), facts)
        if not result.valid:
            ledger.policy_rejected(plan, actor=ledger.user_actor(user), attempted="approve", reasons=result.reasons)
            refusal = gate_refusal(result, attempted="approve")
        else:
            actor = ledger.user_actor(user)
            editors = list(plan.edited_by_since_approval)  # the approval below clears them
            _reset_changed_failed_steps(plan, steps, actor=actor)
            approved = approvals.record_plan_approval(plan, steps, user=user, approved_at=now)
            outcome = {"outcome": IDEA_EDITED, "edited_by": editors} if editors else {}
            plan_transition(
                plan,
                Move.APPROVE,
                changes=approved,
                actor=actor,
                reason_code="APPROVED",
                explanation=f"Approved by {user.get_username()} ({membership.role})"
                            + (" after people edited it." if editors else "."),
                facts={"risk_level": plan.risk_level, "approver_role": membership.role, **outcome},
                steps=steps,
            )
            if editors:
                _idea_outcome(plan, IDEA_EDITED, observed_at=now, approved_by=user.pk, edited_by=editors)
    if refusal:
        raise_committed_refusal(refusal)
    return plan


def _reset_changed_failed_steps(plan: RevenuePlan, steps: list[PlanStep], *, actor: str) -> None:
    """A FAILED step the revision changed (against what the last approval covered, which is what ran and
    failed) starts a new series of attempts; one it left as it was stays FAILED, for a person's retry."""
    approved_content = (plan.approval_record or {}).get("content", {})
    approved_steps = {step["step_id"]: step for step in approved_content.get("steps", [])}
    current_steps = {step["step_id"]: step for step in approvals.plan_content(plan, steps)["steps"]}
    for step in steps:
        before = approved_steps.get(str(step.step_id))
        if step.status != StepStatus.FAILED or before is None:
            continue
        changes = approvals.content_changes(before, current_steps[str(step.step_id)])
        if not changes:
            continue
        step_transition(step, StepMove.RESET, plan=plan, changes={
            "attempts_before_series": step.attempts, "last_error": "", "next_attempt_at": None})
        ledger.step_reset(plan, step=step, actor=actor, changes=changes, described=approvals.described(changes))


def _move_by_person(*, plan_id: UUID, user, verb: Verb, move: Move, expected_version: int | None,
                    reason_code: str, explanation: str) -> RevenuePlan:
    """A person's move the policy gate has no say in (pause, revise, abort)."""
    with transaction.atomic():
        plan = lock_plan(plan_id)
        require_on_plan(verb, user=user, plan=plan)
        require_move(plan, move)
        require_version(plan, expected_version)
        return plan_transition(plan, move, actor=ledger.user_actor(user), reason_code=reason_code,
                               explanation=explanation)


def plan_revise(*, plan_id: UUID, user, reason: str = "", expected_version: int | None = None) -> RevenuePlan:
    """Back to DRAFT so steps or action types can change; a new approval must follow."""
    return _move_by_person(plan_id=plan_id, user=user, verb=Verb.REVISE, move=Move.REVISE,
                           expected_version=expected_version, reason_code="REVISED",
                           explanation=reason or f"Revised by {user.get_username()}; re-approval required.")


def plan_abort(*, plan_id: UUID, user, reason: str, expected_version: int | None = None) -> RevenuePlan:
    """Any non-terminal plan → ABORTED, with the person's reason. Aborting a DRAFT rejects what was proposed:
    its entry and an IDEA_REJECTED signal (the outcome taxonomy, DESIGN §5) keep the reason, for the digest
    and for later proposals."""
    if not reason or not reason.strip():
        raise ValidationFailed("VALIDATION_ERROR", "An abort needs a reason.")
    reason = reason.strip()
    with transaction.atomic():
        plan = lock_plan(plan_id)
        require_on_plan(Verb.ABORT, user=user, plan=plan)
        require_move(plan, Move.ABORT)
        require_version(plan, expected_version)
        rejected = plan.plan_status == PlanStatus.DRAFT
        plan_transition(plan, Move.ABORT, actor=ledger.user_actor(user), reason_code="ABORTED_BY_USER",
                        explanation=reason, facts={"outcome": IDEA_REJECTED, "reason": reason} if rejected else None)
        if rejected:
            _idea_outcome(plan, IDEA_REJECTED, observed_at=plan.aborted_at, rejected_by=user.pk, reason=reason)
    return plan


# The outcome taxonomy's names for what people did with a proposed plan (DESIGN §5; plans.signals).
IDEA_REJECTED = "IDEA_REJECTED"
IDEA_EDITED = "IDEA_EDITED"


def _idea_outcome(plan: RevenuePlan, outcome: str, *, observed_at, **details) -> None:
    """The outcome as an AccountSignal, in the move's transaction: later proposals and the digest read it."""
    # Late: the services package imports this module before it has bound signal_record.
    from plans.services import signal_record

    signal_record(account_id=plan.account_id, signal_type=outcome, observed_at=observed_at, payload={
        "outcome": outcome, "plan_id": str(plan.id), "plan_type": plan.plan_type, "created_by": plan.created_by,
        **details})
