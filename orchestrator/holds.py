"""The layers the orchestrator sets and lifts on a plan as it advances (DESIGN §3.2-3.3): a kill switch,
the gate before every step attempt, the stall rule; and lifting the layers of a switch that is off."""
from datetime import datetime

from django.conf import settings

from plans import ledger, policy, services
from plans.models import PauseKind, PlanStep, RevenuePlan
from plans.services import approvals

COMPONENT = "orchestrator"
ACTOR = ledger.system_actor(COMPONENT)


def hold_for_failed_steps(plan: RevenuePlan, failed_steps: list[PlanStep]) -> None:
    """The stall rule (DESIGN §3.3): nothing runs a FAILED step again on its own and the plan cannot
    complete past it, so an ACTIVE plan with one is PAUSED with a RETRY_LIMIT layer per such step,
    never left ACTIVE and silent. The retry limit pauses the plan itself (engine.apply_outcome); this holds
    a plan that got here another way (data from before the layers, a move that kept a FAILED step)."""
    for step in failed_steps:
        services.plan_pause_by_policy(
            plan_id=plan.id, component=COMPONENT, kind=PauseKind.RETRY_LIMIT, scope=str(step.step_id),
            reason_code=services.STEP_FAILED,
            explanation=f"{step.action_type} (step {step.sequence + 1}) FAILED after {step.attempts} attempt(s) "
                        f"({step.last_error or 'no error recorded'}) and nothing runs it again on its own. Retry "
                        "it, skip it (if optional), revise, or abort the plan.",
            facts={"step_id": str(step.step_id), "attempts": step.attempts, "last_error": step.last_error},
        )
    plan.refresh_from_db(fields=["plan_status"])


def lift_released_kill_layers(plan: RevenuePlan, *, switches: frozenset[str], steps: list[PlanStep]) -> None:
    """Lift the plan's layers whose switch is off now: GLOBAL_KILL_SWITCH once REVPLAN_EXECUTION_DISABLED
    is off, KILL_SWITCH when its switch (`switches`: the tenant's engaged ones, just read) is released.
    With no other layer left (and the gate allowing it) the plan is ACTIVE again and this advance runs on."""
    released = [
        layer for layer in services.open_layers(plan)
        if (layer.kind == PauseKind.GLOBAL_KILL_SWITCH and not settings.REVPLAN_EXECUTION_DISABLED)
        or (layer.kind == PauseKind.KILL_SWITCH and layer.scope not in switches)
    ]
    if released:
        services.pause_layers_lift_locked(plan, released, actor=ACTOR, why="the switch that held it is off",
                                          steps=steps)


def kill_layer(switches: frozenset[str], action_type: str = "") -> tuple[PauseKind, str]:
    """The pause layer (kind, scope) for what stops execution: the global switch, the tenant's, or the
    action type's (the scope a release of that switch lifts)."""
    if settings.REVPLAN_EXECUTION_DISABLED:
        return PauseKind.GLOBAL_KILL_SWITCH, ""
    if "" in switches or not action_type:
        return PauseKind.KILL_SWITCH, ""
    return PauseKind.KILL_SWITCH, action_type


def step_gate_facts(plan: RevenuePlan, steps: list[PlanStep], *, now: datetime,
                     owner_active: bool) -> policy.StepGateFacts:
    """What the step gate compares, from what the advance already read (no query): the owner's
    membership, and what drifted since the plan's approval (none compared for a plan with no record)."""
    changes = approvals.plan_changes(plan, steps)
    drift = tuple((changes[0] + changes[1]) if changes else ())
    return policy.StepGateFacts(now=now, owner_is_active_member=owner_active, approval_drift=drift)


def hold_at_gate(plan: RevenuePlan, step: PlanStep, result: policy.StepGateResult,
                  gate: policy.StepGateFacts) -> None:
    """The gate refused the step's attempt: hold the plan with one layer per kind of refusal."""
    for kind, reasons in result.by_layer().items():
        evidence = {"step_id": str(step.step_id), "gate_reasons": [reason.as_dict() for reason in reasons]}
        if kind == PauseKind.APPROVAL_STALE:
            evidence["changed"] = list(gate.approval_drift)
        services.pause_layer_add_locked(
            plan, kind=kind, actor=ACTOR, reason_code=reasons[0].code, evidence=evidence,
            explanation=f"Step {step.sequence + 1} ({step.action_type}) did not start: "
                        + " ".join(reason.detail for reason in reasons),
        )
