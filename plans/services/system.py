"""The system's own plan moves; the orchestrator calls these under the row locks it holds."""
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from plans import ledger, policy, selectors
from plans.errors import PolicyRefused
from plans.evaluator import Evaluation, Outcome, evaluate
from plans.lifecycle import Move
from plans.locking import lock_account_then_plan, lock_plan
from plans.models import PlanStep, RevenuePlan
from plans.schemas import plan_to_schema
from plans.services.common import gate_refusal, raise_committed_refusal, require_move
from plans.services.moves import plan_transition


def plan_activate_locked(
    plan: RevenuePlan, *, steps: list[PlanStep], component: str, engaged_switches: frozenset[str] | None = None
) -> policy.PolicyResult:
    """plan_activate's work for a caller holding the account's and then the plan's row lock (the
    orchestrator activates and starts the first steps in one transaction). A refusal is ledgered
    (once per change of reasons) and returned, not raised: the caller decides what to commit."""
    require_move(plan, Move.ACTIVATE)
    actor = ledger.system_actor(component)
    facts = selectors.gate_facts(plan, now=timezone.now(), engaged_switches=engaged_switches)
    result = policy.evaluate_can_activate(plan_to_schema(plan, steps), facts)
    if not result.can_activate:
        ledger.activation_blocked(plan, actor=actor, reasons=result.reasons)
    else:
        plan_transition(plan, Move.ACTIVATE, actor=actor, reason_code="GATE_ALLOWED",
                    explanation="The policy gate allowed activation: no conflicting plan, preconditions met.",
                    facts={"gate_reasons": [], "execution_killed_by": facts.execution_killed_by}, steps=steps)
    return result


def plan_settle_locked(plan: RevenuePlan, evaluation: Evaluation, *, steps: list[PlanStep],
                       component: str) -> RevenuePlan:
    """COMPLETE or EXPIRE as `evaluation` (made under the plan's row lock, which the caller still holds) says."""
    move = _SETTLE_MOVES[evaluation.outcome]
    if move == Move.COMPLETE:
        plan.completion_reason = evaluation.reason
    return plan_transition(
        plan, move, actor=ledger.system_actor(component), reason_code=evaluation.reason,
        explanation=_SETTLE_EXPLANATIONS[evaluation.reason], facts=evaluation.facts, steps=steps,
    )


_SETTLE_MOVES = {Outcome.COMPLETE: Move.COMPLETE, Outcome.EXPIRE: Move.EXPIRE}


_SETTLE_EXPLANATIONS = {
    "objective_met": "The objective was met: the renewal was committed before day -30.",
    "all_steps_done": "Every required step succeeded and every other step finished.",
    "expired": "The plan's time window closed before it finished.",
}


def plan_pause_by_policy(
    *, plan_id: UUID, component: str, reason_code: str, explanation: str, facts: dict | None = None
) -> RevenuePlan:
    with transaction.atomic():
        plan = lock_plan(plan_id)
        return plan_transition(plan, Move.PAUSE, actor=ledger.system_actor(component), reason_code=reason_code,
                           explanation=explanation, facts=facts)


def plan_abort_by_policy(
    *, plan_id: UUID, component: str, reason_code: str, explanation: str, facts: dict | None = None
) -> RevenuePlan:
    with transaction.atomic():
        plan = lock_plan(plan_id)
        return plan_transition(plan, Move.ABORT, actor=ledger.system_actor(component), reason_code=reason_code,
                           explanation=explanation, facts=facts)


def plan_activate(*, plan_id: UUID, component: str = "orchestrator") -> RevenuePlan:
    """APPROVED → ACTIVE when the gate says can_activate; otherwise ledger why (once per change)."""
    with transaction.atomic():
        plan = lock_account_then_plan(plan_id)
        result = plan_activate_locked(plan, steps=list(plan.steps.all()), component=component)
    if not result.can_activate:
        raise_committed_refusal(gate_refusal(result, attempted="activate"))
    return plan


def _settle(plan_id: UUID, *, expected: Outcome, component: str) -> RevenuePlan:
    with transaction.atomic():
        plan = lock_plan(plan_id)
        require_move(plan, _SETTLE_MOVES[expected])
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


def plan_complete(*, plan_id: UUID, component: str = "evaluator") -> RevenuePlan:
    return _settle(plan_id, expected=Outcome.COMPLETE, component=component)


def plan_expire(*, plan_id: UUID, component: str = "evaluator") -> RevenuePlan:
    return _settle(plan_id, expected=Outcome.EXPIRE, component=component)
