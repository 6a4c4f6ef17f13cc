"""Writers for a plan's own chain: one function per event of the plan and its steps."""
from collections.abc import Iterable
from uuid import UUID

from plans.errors import Reason
from plans.ledger.chain import append, snapshot
from plans.lifecycle import MoveRule
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan

# The event that puts a plan in each of the statuses that carry a stop reason.
STOP_EVENTS = {
    PlanStatus.PAUSED: EventType.PLAN_PAUSED,
    PlanStatus.COMPLETED: EventType.PLAN_COMPLETED,
    PlanStatus.ABORTED: EventType.PLAN_ABORTED,
    PlanStatus.EXPIRED: EventType.PLAN_EXPIRED,
}


def plan_created(plan: RevenuePlan, *, actor: str, trigger: str, inputs_summary: dict) -> PlanLedgerEntry:
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PLAN_CREATED,
        actor=actor,
        reason_code=trigger,
        explanation=f"{plan.plan_type} plan proposed for account {plan.account_id} ({trigger}).",
        data={"trigger": trigger, "inputs": inputs_summary, "plan": snapshot(plan)},
    )


def plan_edited(plan: RevenuePlan, *, actor: str, changed_fields: list[str]) -> PlanLedgerEntry:
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PLAN_EDITED,
        actor=actor,
        explanation=f"Draft edited: {', '.join(changed_fields)}.",
        data={"changed_fields": changed_fields, "plan": snapshot(plan)},
    )


def plan_moved(
    plan: RevenuePlan,
    rule: MoveRule,
    *,
    from_status: str,
    actor: str,
    reason_code: str,
    explanation: str,
    facts: dict,
    steps=None,
) -> PlanLedgerEntry:
    """`steps`: the plan's steps when the caller holds them (saves reading them for the snapshot)."""
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=rule.event_type,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation,
        data={"from_status": from_status, "to_status": rule.target, "facts": facts, "plan": snapshot(plan, steps)},
    )


def policy_rejected(plan: RevenuePlan, *, actor: str, attempted: str, reasons: Iterable[Reason]) -> PlanLedgerEntry:
    reason_list = [reason.as_dict() for reason in reasons]
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.POLICY_REJECTED,
        actor=actor,
        reason_code=reason_list[0]["code"],
        explanation=f"The policy gate refused to {attempted} the plan: "
        + " ".join(reason["detail"] for reason in reason_list),
        data={"attempted": attempted, "reasons": reason_list},
    )


def activation_blocked(plan: RevenuePlan, *, actor: str, reasons: Iterable[Reason]) -> PlanLedgerEntry | None:
    """Written once per change of reasons, not on every tick that finds the plan still blocked."""
    reason_list = [reason.as_dict() for reason in reasons]
    last = PlanLedgerEntry.objects.filter(plan_id=plan.id).order_by("-chain_seq").first()
    if last and last.event_type == EventType.ACTIVATION_BLOCKED and last.data.get("reasons") == reason_list:
        return None
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.ACTIVATION_BLOCKED,
        actor=actor,
        reason_code=reason_list[0]["code"],
        explanation="The plan is approved but may not start yet: "
        + " ".join(reason["detail"] for reason in reason_list),
        data={"reasons": reason_list},
    )


def plan_owner_changed(plan: RevenuePlan, *, actor: str, old_owner_id, new_owner_id, reason: str = ""
                       ) -> PlanLedgerEntry:
    because = f": {reason.rstrip('.')}" if reason else ""
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PLAN_OWNER_CHANGED,
        actor=actor,
        reason_code="OWNERSHIP_CHANGED",
        explanation=f"The account changed owner; the plan moved from user {old_owner_id} to user "
                    f"{new_owner_id}{because}.",
        data={"old_owner_id": old_owner_id, "new_owner_id": new_owner_id, "reason": reason, "plan": snapshot(plan)},
    )


# --- steps -------------------------------------------------------------------------------------


def step_skipped(plan: RevenuePlan, *, step_id: UUID, actor: str, reason: str) -> PlanLedgerEntry:
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step_id,
        event_type=EventType.STEP_SKIPPED,
        actor=actor,
        reason_code="STEP_SKIPPED",
        explanation=reason,
        data={"plan": snapshot(plan)},
    )


def step_closed(plan: RevenuePlan, *, step, actor: str) -> PlanLedgerEntry:
    """A waiting step SKIPPED because its plan ended (the move's entry before it has the snapshot)."""
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id,
        event_type=EventType.STEP_CLOSED,
        actor=actor,
        reason_code=f"PLAN_{plan.plan_status}",
        explanation=step.skip_reason,
        data={"step_status": step.status, "required": step.required},
    )


def step_retried(plan: RevenuePlan, *, step, actor: str, reason: str) -> PlanLedgerEntry:
    """A person started a new series of attempts for a FAILED step (a redrive); `step` is already PENDING."""
    first = step.attempts_before_series + 1
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id,
        event_type=EventType.STEP_RETRIED,
        actor=actor,
        reason_code="STEP_RETRIED",
        explanation=f"{step.action_type} is retried: a new series of attempts starts at attempt {first}"
        + (f" ({reason.rstrip('.')})." if reason else "."),
        data={"attempts_before_series": step.attempts_before_series, "first_attempt": first,
              "last_error": step.last_error, "reason": reason, "plan": snapshot(plan)},
    )


def step_approved(plan: RevenuePlan, *, step_id: UUID, actor: str) -> PlanLedgerEntry:
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step_id,
        event_type=EventType.STEP_APPROVED,
        actor=actor,
        explanation="A person approved the step; it runs on the next advance.",
        data={"plan": snapshot(plan)},
    )


def step_awaiting_approval(plan: RevenuePlan, *, step, decision: dict, actor: str) -> PlanLedgerEntry:
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id,
        event_type=EventType.STEP_AWAITING_APPROVAL,
        actor=actor,
        reason_code=decision.get("reason", ""),
        explanation=f"{step.action_type} waits for a person's approval: {decision.get('explanation', '')}",
        # The attempt it waits to make: a backtest replays a retry's decision as the engine made it.
        data={"attempt": step.attempts + 1, "autonomy_decision": decision},
    )


def step_attempt_started(plan: RevenuePlan, *, step, intent, actor: str) -> PlanLedgerEntry:
    decision = intent.autonomy_decision
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id,
        event_type=EventType.STEP_ATTEMPT_STARTED,
        actor=actor,
        reason_code=decision.get("reason", ""),
        explanation=f"Attempt {intent.attempt} of {step.action_type} started: {decision.get('explanation', '')}",
        data={"attempt": intent.attempt, "intent_id": str(intent.id), "autonomy_decision": decision},
    )


def step_retry_scheduled(plan: RevenuePlan, *, step, attempt: int, error: str, next_attempt_at, actor: str):
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id,
        event_type=EventType.STEP_RETRY_SCHEDULED,
        actor=actor,
        reason_code="STEP_FAILED",
        explanation=f"Attempt {attempt} of {step.action_type} failed ({error}); attempt {attempt + 1} at "
        f"{next_attempt_at:%Y-%m-%d %H:%M:%S} UTC.",
        data={"attempt": attempt, "error": error, "next_attempt_at": next_attempt_at.isoformat()},
    )
