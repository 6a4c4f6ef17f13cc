"""The step autonomy decision the orchestrator asks before every step attempt.

Interim rule until autonomy modes, budgets and opt-in land: a step that contacts the customer
under `no_external_contact_without_approval` waits for a person; every other step of an
approved plan runs on the plan's approval.
"""
from dataclasses import asdict, dataclass
from enum import StrEnum

from plans.plan_types import get_action_type
from plans.policy import HUMAN_TOUCH_CONSTRAINT

POLICY_VERSION = "interim-v0"


class Decision(StrEnum):
    AUTO_EXECUTE = "AUTO_EXECUTE"
    REQUIRE_APPROVAL = "REQUIRE_APPROVAL"
    BLOCK = "BLOCK"


@dataclass(frozen=True)
class AutonomyDecision:
    decision: Decision
    reason: str
    explanation: str
    policy_version: str = POLICY_VERSION

    def as_dict(self) -> dict:
        return {key: str(value) for key, value in asdict(self).items()}


def decide_step(*, action_type: str, constraints: dict) -> AutonomyDecision:
    spec = get_action_type(action_type)
    if spec is None:
        return AutonomyDecision(Decision.BLOCK, "UNKNOWN_ACTION_TYPE", f"{action_type} is not in the catalogue.")
    if spec.external_contact and constraints.get(HUMAN_TOUCH_CONSTRAINT, True):
        return AutonomyDecision(
            Decision.REQUIRE_APPROVAL,
            "EXTERNAL_CONTACT",
            f"{action_type} contacts the customer, and the plan requires a person to approve that first.",
        )
    return AutonomyDecision(
        Decision.AUTO_EXECUTE, "PLAN_APPROVED", f"{action_type} runs on the plan's approval; it contacts no one."
    )


def approved_by_person(*, approver_id: int) -> AutonomyDecision:
    return AutonomyDecision(
        Decision.REQUIRE_APPROVAL, "APPROVED_BY_PERSON", f"User {approver_id} approved this step."
    )
