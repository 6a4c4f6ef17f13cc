"""The plan policy gate (DESIGN §3.5): pure checks over a RevenuePlanV1 and the facts gathered for it.

Each check is a small function returning reasons; the gate runs a declared list of them, so a new
rule is one new item. Same plan and facts in, same result out.
"""
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from plans.errors import Reason
from plans.models import PauseKind, PlanStatus, Role
from plans.plan_types import get_action_type, get_plan_type_config, highest_risk, plan_type_config_for
from plans.schemas import RevenuePlanV1

INVALID_PLAN_TYPE = "INVALID_PLAN_TYPE"
STEP_ORDER_VIOLATION = "STEP_ORDER_VIOLATION"
RISK_REQUIRES_ELEVATED_AUTHORITY = "RISK_REQUIRES_ELEVATED_AUTHORITY"
HUMAN_TOUCH_REQUIRED = "HUMAN_TOUCH_REQUIRED"
CONFLICT_ACTIVE_PLAN_EXISTS = "CONFLICT_ACTIVE_PLAN_EXISTS"
PRECONDITION_FAILED = "PRECONDITION_FAILED"
PLAN_EXPIRED = "PLAN_EXPIRED"

HUMAN_TOUCH_CONSTRAINT = "no_external_contact_without_approval"


@dataclass(frozen=True)
class GateFacts:
    """What the gate may know besides the plan; gathered by plans.selectors.gate_facts."""

    now: datetime
    approver_role: Role | None = None
    execution_killed_by: str = ""
    owner_is_active_member: bool = True
    conflicting_plan_id: UUID | None = None
    conflicting_plan_status: str = PlanStatus.ACTIVE


@dataclass(frozen=True)
class PolicyResult:
    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    @property
    def valid(self) -> bool:
        return not self.reasons

    @property
    def can_activate(self) -> bool:
        return not self.reasons

    @property
    def codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]


Check = Callable[[RevenuePlanV1, GateFacts], list[Reason]]


def check_plan_type(plan: RevenuePlanV1, facts: GateFacts) -> list[Reason]:
    if plan_type_config_for(plan) is None:
        if get_plan_type_config(plan.plan_type) is not None:
            return [Reason(INVALID_PLAN_TYPE, f"{plan.plan_type} has no version {plan.plan_type_version} in this "
                                              "deploy's catalogue.")]
        return [Reason(INVALID_PLAN_TYPE, f"Plan type {plan.plan_type!r} is not an allowed plan type.")]
    return []


def check_steps(plan: RevenuePlanV1, facts: GateFacts) -> list[Reason]:
    config = plan_type_config_for(plan)
    if config is None:
        return []  # check_plan_type already said why
    if not plan.steps:
        return [Reason(STEP_ORDER_VIOLATION, "The plan has no steps.")]
    reasons = [
        Reason(STEP_ORDER_VIOLATION, f"Step {step.sequence} uses action type {step.action_type!r}, "
               f"which {plan.plan_type} does not allow.")
        for step in plan.steps
        if step.action_type not in config.allowed_action_types
    ]
    step_ids = {step.step_id for step in plan.steps}
    if len(step_ids) != len(plan.steps):
        reasons.append(Reason(STEP_ORDER_VIOLATION, "Two steps share one step_id."))
    for step in plan.steps:
        for dependency in step.depends_on:
            if dependency == step.step_id:
                reasons.append(Reason(STEP_ORDER_VIOLATION, f"Step {step.sequence} depends on itself."))
            elif dependency not in step_ids:
                reasons.append(
                    Reason(STEP_ORDER_VIOLATION, f"Step {step.sequence} depends on unknown step {dependency}.")
                )
    if not reasons and _has_cycle(plan):
        reasons.append(Reason(STEP_ORDER_VIOLATION, "The step dependencies form a cycle."))
    reasons.extend(_default_sequence_violations(plan, config.default_sequence))
    return reasons


def _has_cycle(plan: RevenuePlanV1) -> bool:
    remaining = {step.step_id: set(step.depends_on) for step in plan.steps}
    while remaining:
        ready = [step_id for step_id, deps in remaining.items() if not deps]
        if not ready:
            return True
        for step_id in ready:
            del remaining[step_id]
        for deps in remaining.values():
            deps.difference_update(ready)
    return False


def _default_sequence_violations(plan: RevenuePlanV1, default_sequence: tuple[str, ...]) -> list[Reason]:
    """Relative order only: omitted steps are fine, a later type before an earlier one is not."""
    rank = {action_type: index for index, action_type in enumerate(default_sequence)}
    by_id = {step.step_id: step for step in plan.steps}
    ordered = [step for step in sorted(plan.steps, key=lambda s: s.sequence) if step.action_type in rank]
    reasons = []
    for earlier, later in itertools.pairwise(ordered):
        if rank[earlier.action_type] > rank[later.action_type]:
            reasons.append(Reason(
                STEP_ORDER_VIOLATION,
                f"{earlier.action_type} comes before {later.action_type}, against the default sequence "
                f"{' -> '.join(default_sequence)}.",
            ))
    for step in plan.steps:
        for dependency_id in step.depends_on:
            dependency = by_id.get(dependency_id)
            if dependency and rank.get(dependency.action_type, -1) > rank.get(step.action_type, -1) >= 0:
                reasons.append(Reason(
                    STEP_ORDER_VIOLATION,
                    f"{step.action_type} waits for {dependency.action_type}, against the default sequence.",
                ))
    return reasons


def check_human_touch(plan: RevenuePlanV1, facts: GateFacts) -> list[Reason]:
    external = sorted(
        {
            step.action_type
            for step in plan.steps
            if (spec := get_action_type(step.action_type)) and spec.external_contact
        }
    )
    if external and plan.constraints.get(HUMAN_TOUCH_CONSTRAINT) is not True:
        return [Reason(
            HUMAN_TOUCH_REQUIRED,
            f"{', '.join(external)} contacts the customer, so the plan must keep the "
            f"{HUMAN_TOUCH_CONSTRAINT} constraint on.",
        )]
    return []


def check_risk_authority(plan: RevenuePlanV1, facts: GateFacts) -> list[Reason]:
    step_risks = [spec.risk_level for step in plan.steps if (spec := get_action_type(step.action_type))]
    risk = highest_risk(step_risks)
    if risk == "HIGH" and facts.approver_role != Role.TENANT_ADMIN:
        return [Reason(
            RISK_REQUIRES_ELEVATED_AUTHORITY,
            "The plan is HIGH risk (it inherits its riskiest step), so only a tenant admin may approve it.",
        )]
    return []


def check_not_expired(plan: RevenuePlanV1, facts: GateFacts) -> list[Reason]:
    if facts.now >= plan.expires_at:
        return [Reason(PLAN_EXPIRED, f"The plan expired at {plan.expires_at.isoformat()}.")]
    return []


def check_approved(plan: RevenuePlanV1, facts: GateFacts) -> list[Reason]:
    if plan.plan_status not in (PlanStatus.APPROVED, PlanStatus.PAUSED) or plan.approved_at is None:
        return [Reason(PRECONDITION_FAILED, f"The plan is {plan.plan_status}, not approved.")]
    return []


def check_execution_allowed(plan: RevenuePlanV1, facts: GateFacts) -> list[Reason]:
    if facts.execution_killed_by:
        return [Reason(PRECONDITION_FAILED, f"Execution is switched off ({facts.execution_killed_by}).")]
    return []


def check_owner_active(plan: RevenuePlanV1, facts: GateFacts) -> list[Reason]:
    if not facts.owner_is_active_member:
        return [Reason(PRECONDITION_FAILED, "The account is no longer owned by an active member of the tenant.")]
    return []


def check_no_conflicting_plan(plan: RevenuePlanV1, facts: GateFacts) -> list[Reason]:
    if facts.conflicting_plan_id is not None:
        return [Reason(
            CONFLICT_ACTIVE_PLAN_EXISTS,
            f"Plan {facts.conflicting_plan_id} is already {facts.conflicting_plan_status} for this account and "
            f"plan type; only one may be approved or active at a time.",
        )]
    return []


STRUCTURE_CHECKS: tuple[Check, ...] = (check_plan_type, check_steps)
# The conflict rule refuses an approval while another plan of the type is APPROVED or ACTIVE (no queue):
# plans.selectors.gate_facts looks for both statuses when asked for an approval.
APPROVAL_CHECKS: tuple[Check, ...] = (
    *STRUCTURE_CHECKS, check_human_touch, check_risk_authority, check_not_expired, check_no_conflicting_plan,
)
ACTIVATION_CHECKS: tuple[Check, ...] = (
    check_plan_type,
    check_approved,
    check_not_expired,
    check_execution_allowed,
    check_owner_active,
    check_no_conflicting_plan,
)


# A reapproval covers content that was approved already (a PAUSED plan's cannot change): the approval
# checks again on the current facts and config, without the conflict rule, which the resume that
# follows re-checks (a conflicting plan then holds it with a POLICY layer).
REAPPROVAL_CHECKS: tuple[Check, ...] = (*STRUCTURE_CHECKS, check_human_touch, check_risk_authority, check_not_expired)


def _run(checks: tuple[Check, ...], plan: RevenuePlanV1, facts: GateFacts) -> PolicyResult:
    return PolicyResult(tuple(reason for check in checks for reason in check(plan, facts)))


def validate_structure(plan: RevenuePlanV1, facts: GateFacts) -> PolicyResult:
    """What a DRAFT must satisfy to be saved at all: a known type and well-formed steps."""
    return _run(STRUCTURE_CHECKS, plan, facts)


def validate_for_approval(plan: RevenuePlanV1, facts: GateFacts) -> PolicyResult:
    return _run(APPROVAL_CHECKS, plan, facts)


def validate_for_reapproval(plan: RevenuePlanV1, facts: GateFacts) -> PolicyResult:
    return _run(REAPPROVAL_CHECKS, plan, facts)


def evaluate_can_activate(plan: RevenuePlanV1, facts: GateFacts) -> PolicyResult:
    return _run(ACTIVATION_CHECKS, plan, facts)


# --- the gate before every step attempt (DESIGN §3.3) ---------------------------------------------


@dataclass(frozen=True)
class StepGateFacts:
    """What the step gate knows besides the plan and the step; the engine gathers it once per advance."""

    now: datetime
    owner_is_active_member: bool
    # What drifted since the plan's approval, [{field, before, after}] (plans.services.approvals): the
    # facts it was given on (owner, renewal date, risk, config version) and, should it ever differ, its content.
    approval_drift: tuple[dict, ...] = ()


StepCheckFunction = Callable[[RevenuePlanV1, object, StepGateFacts], list[Reason]]


@dataclass(frozen=True)
class StepCheck:
    """One check of the step gate and the pause layer that holds the plan when it refuses."""

    layer: PauseKind
    check: StepCheckFunction


@dataclass(frozen=True)
class StepGateResult(PolicyResult):
    # (layer, reason) for each reason: the engine holds the plan with one layer per kind named here.
    holds: tuple[tuple[PauseKind, Reason], ...] = ()

    def by_layer(self) -> dict[PauseKind, list[Reason]]:
        layers: dict[PauseKind, list[Reason]] = {}
        for layer, reason in self.holds:
            layers.setdefault(layer, []).append(reason)
        return layers


def check_step_owner_active(plan, step, facts: StepGateFacts) -> list[Reason]:
    if not facts.owner_is_active_member:
        return [Reason(PRECONDITION_FAILED, f"The plan's owner (user {plan.owner_id}) is no longer an active "
                                            "member of the tenant who may own accounts.")]
    return []


def check_step_approval_holds(plan, step, facts: StepGateFacts) -> list[Reason]:
    """Account not transferred, renewal date not moved, risk not risen, config not changed since approval."""
    if facts.approval_drift:
        drift = "; ".join(f"{change['field']} {change['before']} -> {change['after']}"
                          for change in facts.approval_drift)
        return [Reason(PRECONDITION_FAILED, f"The plan was approved on other facts: {drift}.")]
    return []


def check_step_not_expired(plan, step, facts: StepGateFacts) -> list[Reason]:
    if facts.now >= plan.expires_at:
        return [Reason(PLAN_EXPIRED, f"The plan expired at {plan.expires_at.isoformat()}.")]
    return []


def check_step_action_allowed(plan, step, facts: StepGateFacts) -> list[Reason]:
    # A plan whose steps run was approved: it runs on the version its approval stamped.
    config = get_plan_type_config(plan.plan_type, plan.plan_type_version)
    if config is None:
        if get_plan_type_config(plan.plan_type) is not None:
            return [Reason(INVALID_PLAN_TYPE, f"{plan.plan_type} has no version {plan.plan_type_version} in this "
                                              "deploy's catalogue.")]
        return [Reason(INVALID_PLAN_TYPE, f"Plan type {plan.plan_type!r} is not an allowed plan type.")]
    if step.action_type not in config.allowed_action_types:
        return [Reason(STEP_ORDER_VIOLATION, f"{step.action_type} is not an action type {plan.plan_type} "
                                             f"version {config.version} allows.")]
    return []


# Kill switches are checked too, but hold the plan with layers of their own that their release lifts:
# the tenant's (and the global one) by orchestrator.engine before any step, an action type's by the
# autonomy policy (BLOCK, KILL_SWITCH) right after this gate.
STEP_CHECKS: tuple[StepCheck, ...] = (
    StepCheck(PauseKind.OWNER_INACTIVE, check_step_owner_active),
    StepCheck(PauseKind.APPROVAL_STALE, check_step_approval_holds),
    StepCheck(PauseKind.POLICY, check_step_not_expired),
    StepCheck(PauseKind.POLICY, check_step_action_allowed),
)


def check_step(plan, step, facts: StepGateFacts) -> StepGateResult:
    """May this step attempt start? `plan` and `step`: a RevenuePlanV1 and its step, or the model rows
    (only plan_type, plan_type_version, owner_id, expires_at and the step's action_type are read)."""
    holds = tuple((item.layer, reason) for item in STEP_CHECKS for reason in item.check(plan, step, facts))
    return StepGateResult(reasons=tuple(reason for _, reason in holds), holds=holds)
