"""AutoApprovalPolicyV1: may a step run on its own, does it need a person, or is it blocked?

A pure function of its inputs (DESIGN §5): no database, no clock, so the same input always gives
the same decision and a recorded decision can be explained later from the facts stored with it.
The orchestrator gathers the facts (orchestrator.autonomy.services) and records the result on the
step attempt; changing the policy changes the version on new decisions, never old ones.

The checks run in a fixed order; the first that applies decides:
  BLOCK             UNKNOWN_ACTION_TYPE, KILL_SWITCH, MODE_DISABLED, MODE_PROPOSE_ONLY
  (a person approved the step as it is now)         -> REQUIRE_APPROVAL / APPROVED_BY_PERSON: it runs
  REQUIRE_APPROVAL  EXTERNAL_CONTACT, RISK_LEVEL_HIGH, SHADOW_MODE, TENANT_POLICY (mode APPROVAL_REQUIRED),
                    NOT_OPTED_IN, BUDGET_EXHAUSTED
  AUTO_EXECUTE      AUTONOMY_ALLOWED
A person's approval counts only while the step's content is what they approved (its digest, recorded
with the approval); a step whose approval a change voided waits for a person again, and the
explanation says what changed.

In SHADOW mode a person approves every step, as in APPROVAL_REQUIRED (reason SHADOW_MODE), and
`shadow_verdict` says what the policy would have done on its own: the same checks as if the action type
were AUTO_EXECUTE in an opted-in tenant, with no person's approval counted (nothing is taken from a budget).
"""
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

from plans.models import RiskLevel
from plans.plan_types import get_action_type
from plans.policy import HUMAN_TOUCH_CONSTRAINT

POLICY_VERSION = "auto-approval-v1"


class Decision(StrEnum):
    AUTO_EXECUTE = "AUTO_EXECUTE"
    REQUIRE_APPROVAL = "REQUIRE_APPROVAL"
    BLOCK = "BLOCK"


class Reason(StrEnum):
    UNKNOWN_ACTION_TYPE = "UNKNOWN_ACTION_TYPE"
    KILL_SWITCH = "KILL_SWITCH"
    MODE_DISABLED = "MODE_DISABLED"
    MODE_PROPOSE_ONLY = "MODE_PROPOSE_ONLY"
    APPROVED_BY_PERSON = "APPROVED_BY_PERSON"
    EXTERNAL_CONTACT = "EXTERNAL_CONTACT"
    RISK_LEVEL_HIGH = "RISK_LEVEL_HIGH"
    TENANT_POLICY = "TENANT_POLICY"
    NOT_OPTED_IN = "NOT_OPTED_IN"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    SHADOW_MODE = "SHADOW_MODE"
    AUTONOMY_ALLOWED = "AUTONOMY_ALLOWED"


@dataclass(frozen=True)
class AutonomyDecision:
    decision: Decision
    reason: str
    explanation: str
    policy_version: str = POLICY_VERSION

    def as_dict(self) -> dict:
        return {key: str(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class StepFacts:
    """Everything the policy looks at, as the orchestrator found it when the step came due."""

    action_type: str
    risk_level: str
    constraints: dict
    mode: str
    opted_in: bool
    killed_by: str = ""
    budget_left: bool = True
    # The person whose approval covers the step's current content (its digest matches), else None.
    approved_by_id: int | None = None
    # What changed since a person's approval was voided ('' if none was): "parameters changed".
    approval_voided: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def decide(facts: StepFacts) -> AutonomyDecision:
    decision = _decide(facts)
    if decision.decision == Decision.REQUIRE_APPROVAL and facts.approval_voided and facts.approved_by_id is None:
        return AutonomyDecision(decision.decision, decision.reason,
                                f"{decision.explanation} Its approval was voided: {facts.approval_voided}.",
                                decision.policy_version)
    return decision


def shadow_verdict(facts: StepFacts) -> AutonomyDecision:
    """What the policy would decide on its own: as if AUTO_EXECUTE, opted in, with no person's approval."""
    return _decide(replace(facts, mode="AUTO_EXECUTE", opted_in=True, approved_by_id=None, approval_voided=""))


def _decide(facts: StepFacts) -> AutonomyDecision:
    action_type = facts.action_type
    spec = get_action_type(action_type)
    if spec is None:
        return _block(Reason.UNKNOWN_ACTION_TYPE, f"{action_type} is not in the catalogue; nothing can carry it out.")
    if facts.killed_by:
        return _block(Reason.KILL_SWITCH, f"{action_type} may not run: {facts.killed_by} is on.")
    if facts.mode == "DISABLED":
        return _block(Reason.MODE_DISABLED, f"{action_type} is switched off for this tenant (mode DISABLED).")
    if facts.mode == "PROPOSE_ONLY":
        return _block(Reason.MODE_PROPOSE_ONLY, f"This tenant lets the system only propose {action_type}, "
                                                "not carry it out (mode PROPOSE_ONLY).")
    if facts.approved_by_id is not None:
        return AutonomyDecision(Decision.REQUIRE_APPROVAL, Reason.APPROVED_BY_PERSON,
                                f"User {facts.approved_by_id} approved this step.")
    if spec.external_contact and facts.constraints.get(HUMAN_TOUCH_CONSTRAINT, True):
        return _approval(Reason.EXTERNAL_CONTACT,
                         f"{action_type} contacts the customer, and the plan requires a person to approve that first.")
    if RiskLevel.HIGH in (facts.risk_level, spec.risk_level):
        return _approval(Reason.RISK_LEVEL_HIGH, f"{action_type} is HIGH risk; HIGH-risk steps never run on their own.")
    if facts.mode == "SHADOW":
        return _approval(Reason.SHADOW_MODE, f"{action_type} is in shadow mode here: a person approves each one, "
                                             "and what the policy would have done is recorded beside it.")
    if facts.mode != "AUTO_EXECUTE":
        return _approval(Reason.TENANT_POLICY, f"This tenant requires a person to approve each {action_type} "
                                          f"(mode {facts.mode}).")
    if not facts.opted_in:
        return _approval(Reason.NOT_OPTED_IN, f"{action_type} may run on its own here, but the tenant has not opted in "
                                         "to autonomous execution.")
    if not facts.budget_left:
        return _approval(Reason.BUDGET_EXHAUSTED, f"Today's autonomy budget for {action_type} or this account is used "
                                             "up; a person approves the rest.")
    return AutonomyDecision(Decision.AUTO_EXECUTE, Reason.AUTONOMY_ALLOWED,
                            f"{action_type} is {spec.risk_level} risk, contacts no one without approval, and the "
                            "tenant opted in to running it on its own.")


def _block(reason: Reason, explanation: str) -> AutonomyDecision:
    return AutonomyDecision(Decision.BLOCK, reason, explanation)


def _approval(reason: Reason, explanation: str) -> AutonomyDecision:
    return AutonomyDecision(Decision.REQUIRE_APPROVAL, reason, explanation)
