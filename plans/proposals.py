"""The plan proposal generator (DESIGN §3.8): rule-based and deterministic; it only ever drafts."""
import uuid

from plans.plan_types import RENEWAL_DEFENSE
from plans.schemas import PlanDraftInput, StepInput

SUPPORT_RISK_SIGNAL_TYPES = frozenset({"SUPPORT_RISK", "SUPPORT_ESCALATION"})


def renewal_defense_draft(*, signal_types: set[str]) -> PlanDraftInput:
    """Meeting, then brief, each waiting for the one before; a support escalation only on support risk."""
    wanted = {"REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF"}
    if signal_types & SUPPORT_RISK_SIGNAL_TYPES:
        wanted.add("ESCALATE_SUPPORT_RISK")
    action_types = [action_type for action_type in RENEWAL_DEFENSE.default_sequence if action_type in wanted]
    steps, previous = [], None
    for action_type in action_types:
        step = StepInput(step_id=uuid.uuid4(), action_type=action_type, depends_on=[previous] if previous else [])
        steps.append(step)
        previous = step.step_id
    return PlanDraftInput(steps=steps)
