"""The system's own plan moves; the orchestrator calls these under the row locks it holds."""
from datetime import datetime
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from plans import ledger, policy, selectors
from plans.evaluator import Evaluation, Outcome
from plans.lifecycle import Move, StepMove
from plans.locking import lock_plan
from plans.models import PauseKind, PlanStatus, PlanStep, RevenuePlan
from plans.schemas import plan_to_schema
from plans.services.common import require_move, touch
from plans.services.moves import plan_transition
from plans.services.pauses import pause_layer_add_locked
from plans.services.steps import step_of, step_transition


def plan_activate_locked(
    plan: RevenuePlan, *, steps: list[PlanStep], component: str, engaged_switches: frozenset[str] | None = None,
    owner_active: bool | None = None, next_run_at: datetime | None = None,
) -> policy.PolicyResult:
    """APPROVED → ACTIVE when the gate says can_activate, for a caller holding the account's and then
    the plan's row lock (the orchestrator activates and starts the first steps in one transaction).
    A refusal is ledgered (once per change of reasons) and returned, not raised: the caller decides
    what to commit. A plan that is not APPROVED is an INVALID_TRANSITION (raised). `next_run_at`: when the
    tick is to look at the plan again, if the caller knows (else at once, as any move into ACTIVE)."""
    require_move(plan, Move.ACTIVATE)
    actor = ledger.system_actor(component)
    facts = selectors.gate_facts(plan, now=timezone.now(), engaged_switches=engaged_switches,
                                 owner_active=owner_active)
    result = policy.evaluate_can_activate(plan_to_schema(plan, steps), facts)
    if not result.can_activate:
        ledger.activation_blocked(plan, actor=actor, reasons=result.reasons)
    else:
        plan_transition(plan, Move.ACTIVATE, actor=actor, reason_code="GATE_ALLOWED",
                        explanation="The policy gate allowed activation: no conflicting plan, preconditions met.",
                        facts={"gate_reasons": [], "execution_killed_by": facts.execution_killed_by}, steps=steps,
                        changes={"next_run_at": next_run_at} if next_run_at else None)
    return result


def plan_settle_locked(plan: RevenuePlan, evaluation: Evaluation, *, steps: list[PlanStep],
                       component: str) -> RevenuePlan:
    """COMPLETE or EXPIRE as `evaluation` (made under the plan's row lock, which the caller still holds) says."""
    move = _SETTLE_MOVES[evaluation.outcome]
    return plan_transition(
        plan, move, actor=ledger.system_actor(component), reason_code=evaluation.reason,
        explanation=_SETTLE_EXPLANATIONS[evaluation.reason], facts=evaluation.facts, steps=steps,
        changes={"completion_reason": evaluation.reason} if move == Move.COMPLETE else None,
    )


_SETTLE_MOVES = {Outcome.COMPLETE: Move.COMPLETE, Outcome.EXPIRE: Move.EXPIRE}


_SETTLE_EXPLANATIONS = {
    "objective_met": "The objective was met: the renewal was committed before day -30.",
    "all_steps_done": "Every required step succeeded and every other step finished.",
    "expired": "The plan's time window closed before it finished.",
}


def plan_pause_by_policy(
    *, plan_id: UUID, component: str, kind: PauseKind, reason_code: str, explanation: str, scope: str = "",
    facts: dict | None = None,
) -> RevenuePlan:
    """Hold the plan with a layer of `kind` set by the system (a kill switch, the retry limit, the
    autonomy policy …): an ACTIVE plan is PAUSED by it, a PAUSED one gets one more layer. Any other
    plan does not run, so nothing can hold it: INVALID_TRANSITION, as the table says."""
    with transaction.atomic():
        plan = lock_plan(plan_id)
        if plan.plan_status != PlanStatus.PAUSED:
            require_move(plan, Move.PAUSE)
        pause_layer_add_locked(plan, kind=kind, scope=scope, actor=ledger.system_actor(component),
                               reason_code=reason_code, explanation=explanation, evidence=facts)
        return plan


def plan_abort_by_policy(
    *, plan_id: UUID, component: str, reason_code: str, explanation: str, facts: dict | None = None
) -> RevenuePlan:
    with transaction.atomic():
        plan = lock_plan(plan_id)
        return plan_transition(plan, Move.ABORT, actor=ledger.system_actor(component), reason_code=reason_code,
                               explanation=explanation, facts=facts)


def step_skip_by_policy(*, plan_id: UUID, step_id: UUID, component: str, reason: str) -> RevenuePlan:
    """The system skips an optional step (a deadline's rule): the same move as a person's skip
    (plans.lifecycle refuses a required one with REQUIRED_STEP), ledgered as the component's."""
    with transaction.atomic():
        plan = lock_plan(plan_id)
        step = step_of(plan, step_id)
        step_transition(step, StepMove.SKIP, plan=plan, changes={"skip_reason": reason})
        touch(plan)
        ledger.step_skipped(plan, step_id=step.step_id, actor=ledger.system_actor(component), reason=reason)
        return plan
