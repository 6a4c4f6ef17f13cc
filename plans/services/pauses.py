"""Pause layers with the moves they cause (DESIGN §3.2): the first layer pauses an ACTIVE plan, a new
cause while PAUSED adds one, and lifting the last lets the plan run again (gate re-checked); and the
people's pause and resume, which set and lift the PERSON layer.

Every *_locked function expects the caller to hold the plan's row lock in an open transaction (the
services and the engine always do); every layer set or lifted is a ledger entry.
"""
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from plans import ledger, policy, selectors
from plans.authority import Verb
from plans.errors import Conflict
from plans.lifecycle import INVALID_TRANSITION, TERMINAL, Move
from plans.locking import lock_account_then_plan, lock_plan
from plans.models import PauseKind, PauseLayer, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.schemas import plan_to_schema
from plans.services.common import (
    gate_refusal,
    raise_committed_refusal,
    require_move,
    require_on_plan,
    require_version,
    touch,
)
from plans.services.layers import LIFTED_BY_RESUME, holding_reasons, layers_lift, open_layers
from plans.services.moves import plan_transition

PAUSE_LAYERS_REMAIN = "PAUSE_LAYERS_REMAIN"
STEP_FAILED = "STEP_FAILED"


def pause_layer_add_locked(
    plan: RevenuePlan,
    *,
    kind: PauseKind,
    actor: str,
    reason_code: str,
    explanation: str,
    scope: str = "",
    evidence: dict | None = None,
    steps: list[PlanStep] | None = None,
) -> PauseLayer | None:
    """Hold the plan with a layer: an ACTIVE plan is PAUSED by it, a PAUSED one gets one more.

    The same cause twice (kind and scope) is one layer. A plan that is neither ACTIVE nor PAUSED is
    not held by layers (DRAFT and APPROVED plans do not run; a finished one never will): None.
    """
    if plan.plan_status not in (PlanStatus.ACTIVE, PlanStatus.PAUSED):
        return None
    held = PauseLayer.objects.filter(plan=plan, kind=kind, scope=scope, lifted_at__isnull=True).first()
    if held is not None:
        return held
    layer = PauseLayer.objects.create(
        plan=plan, kind=kind, scope=scope, reason_code=reason_code, explanation=explanation,
        evidence=evidence or {}, set_by=actor, set_at=timezone.now(),
    )
    if plan.plan_status == PlanStatus.ACTIVE:
        plan_transition(plan, Move.PAUSE, actor=actor, reason_code=reason_code, explanation=explanation,
                        facts={"layer": kind, "scope": scope, **(evidence or {})}, steps=steps)
    else:
        touch(plan)
    ledger.pause_layer_added(plan, layer=layer)
    return layer


def pause_layers_lift_locked(plan: RevenuePlan, layers: list[PauseLayer], *, actor: str, why: str,
                             steps: list[PlanStep] | None = None) -> bool:
    """Lift `layers`; when none is left, the PAUSED plan runs again if the gate allows it (the conflict
    rule and the preconditions re-checked). If the gate does not, a layer says why, so a plan is never
    PAUSED without a reason: execution switched off (the global or the tenant's switch; an action
    type's is decided when its step runs) is that switch's layer, which its release lifts again;
    anything else a POLICY layer. Returns whether the plan is ACTIVE again."""
    remaining = layers_lift(plan, layers, actor=actor, why=why)
    if remaining or plan.plan_status != PlanStatus.PAUSED:
        if layers:
            touch(plan)
        return False
    killed_by = selectors.execution_killed_by(plan.tenant_id)
    if killed_by:
        pause_layer_add_locked(
            plan, kind=PauseKind.GLOBAL_KILL_SWITCH if settings.REVPLAN_EXECUTION_DISABLED else PauseKind.KILL_SWITCH,
            actor=actor, reason_code="KILL_SWITCH", evidence={"killed_by": killed_by}, steps=steps,
            explanation=f"The plan could run again, but execution is switched off ({killed_by}).",
        )
        return False
    result = resume_gate(plan, steps=steps)
    if result.can_activate:
        plan_transition(plan, Move.RESUME, actor=actor, reason_code="LAST_LAYER_LIFTED",
                        explanation=f"Running again: {why.rstrip('.')}; no pause layer is left.", steps=steps)
        return True
    pause_layer_add_locked(
        plan, kind=PauseKind.POLICY, actor=actor, reason_code=result.codes[0],
        explanation="The plan could run again, but the policy gate refused: "
        + " ".join(reason.detail for reason in result.reasons),
        evidence={"gate_reasons": [reason.as_dict() for reason in result.reasons]}, steps=steps,
    )
    return False


def resume_gate(plan: RevenuePlan, *, steps: list[PlanStep] | None = None) -> policy.PolicyResult:
    """May this PAUSED plan run again? The activation checks: approved, not expired, execution on,
    owner active, no conflicting plan (another of the type APPROVED or ACTIVE: DESIGN §3.5)."""
    facts = selectors.gate_facts(plan, now=timezone.now(), conflicts_with=selectors.CONFLICTS_AT_APPROVAL)
    return policy.evaluate_can_activate(plan_to_schema(plan, steps), facts)


# --- people's verbs ------------------------------------------------------------------------------


def plan_pause(*, plan_id: UUID, user, reason: str = "", expected_version: int | None = None) -> RevenuePlan:
    """A person holds the plan: ACTIVE → PAUSED, or one more (PERSON) layer on a PAUSED plan."""
    with transaction.atomic():
        plan = lock_plan(plan_id)
        require_on_plan(Verb.PAUSE, user=user, plan=plan)
        if plan.plan_status != PlanStatus.PAUSED:
            require_move(plan, Move.PAUSE)
        require_version(plan, expected_version)
        if any(layer.kind == PauseKind.PERSON for layer in open_layers(plan)):
            raise Conflict(INVALID_TRANSITION, "The plan is already paused by a person.")
        pause_layer_add_locked(plan, kind=PauseKind.PERSON, actor=ledger.user_actor(user),
                               reason_code="PAUSED_BY_USER", explanation=reason or f"Paused by {user.get_username()}.",
                               evidence={"user_id": user.pk})
    return plan


def plan_resume(*, plan_id: UUID, user, expected_version: int | None = None) -> RevenuePlan:
    """A person lets the plan run again: lifts the PERSON and POLICY layers (and OWNER_INACTIVE once the
    owner is an active member again), when nothing else holds it and the gate allows it. A layer only
    something else can lift (a kill switch, a failed step, a stale approval …) refuses the resume with
    409, naming each and what lifts it; nothing changes."""
    refusal = None
    with transaction.atomic():
        plan = lock_account_then_plan(plan_id)
        require_on_plan(Verb.RESUME, user=user, plan=plan)
        require_move(plan, Move.RESUME)
        require_version(plan, expected_version)
        layers = open_layers(plan)
        # OWNER_INACTIVE is cleared by the owner being an active member again (reactivated): then a
        # resume lifts it too; otherwise only a transfer does.
        owner_back = (any(layer.kind == PauseKind.OWNER_INACTIVE for layer in layers)
                      and selectors.gate_facts(plan, now=timezone.now()).owner_is_active_member)
        held = [layer for layer in layers if layer.kind not in LIFTED_BY_RESUME
                and not (owner_back and layer.kind == PauseKind.OWNER_INACTIVE)]
        if held:
            failed = any(layer.kind == PauseKind.RETRY_LIMIT for layer in held)
            raise Conflict(
                STEP_FAILED if failed else PAUSE_LAYERS_REMAIN,
                ("A step failed at its retry limit: retry it, skip it (if optional), revise or abort the plan."
                 if failed else "Something a resume cannot lift still holds the plan.")
                + " " + " ".join(reason.detail for reason in holding_reasons(held)),
                holding_reasons(held),
            )
        result = resume_gate(plan)
        if not result.can_activate:
            ledger.policy_rejected(plan, actor=ledger.user_actor(user), attempted="resume", reasons=result.reasons)
            refusal = gate_refusal(result, attempted="resume")
        else:
            pause_layers_lift_locked(plan, layers, actor=ledger.user_actor(user),
                                     why=f"resumed by {user.get_username()}")
    if refusal:
        raise_committed_refusal(refusal)
    return plan


def plan_hold_after_cancel_locked(plan: RevenuePlan, *, step_id: UUID, attempt: int, user,
                                  reason: str = "") -> PauseLayer | None:
    """A person cancelled attempt `attempt` of a step before it ran (orchestrator.execution.cancel, under the
    plan's row lock). The cancelled attempt is no failure: the step stays PENDING and starts a new series,
    so it neither schedules an automatic retry nor counts towards the retry limit. The plan is held by a
    PERSON layer, so nothing is tried again until a person resumes it; the next advance then makes a new
    attempt, through the gate before every attempt. A plan that does not run (DRAFT, APPROVED, finished)
    gets no layer."""
    step = PlanStep.objects.filter(plan=plan, step_id=step_id).first()
    if step is not None and step.status == StepStatus.PENDING and step.attempts == attempt:
        step.attempts_before_series, step.next_attempt_at = step.attempts, None
        step.save(update_fields=["attempts_before_series", "next_attempt_at"])
    label = f"step {step.sequence + 1} ({step.action_type})" if step is not None else "a step"
    because = f": {reason.strip().rstrip('.')}" if reason and reason.strip() else ""
    layer = pause_layer_add_locked(
        plan, kind=PauseKind.PERSON, actor=ledger.user_actor(user), reason_code="ATTEMPT_CANCELLED",
        explanation=f"{user.get_username()} cancelled attempt {attempt} of {label} before it ran{because}. It "
                    "is not retried on its own: a resume makes a new attempt.",
        evidence={"user_id": user.pk, "step_id": str(step_id), "attempt": attempt},
    )
    if plan.plan_status not in TERMINAL:
        touch(plan)  # the step's series changed (also when a PERSON layer held the plan already)
    return layer
