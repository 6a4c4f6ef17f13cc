"""The plan proposal generator (DESIGN §3.8): rule-based and deterministic; it only ever drafts."""
from plans.schemas import PlanDraftInput, StepInput

SUPPORT_RISK_SIGNAL_TYPES = frozenset({"SUPPORT_RISK", "SUPPORT_ESCALATION"})


def renewal_defense_draft(*, signal_types: set[str]) -> PlanDraftInput:
    """Meeting, then brief; a support escalation only when the account shows support risk."""
    steps = [StepInput(action_type="REQUEST_RENEWAL_MEETING"), StepInput(action_type="PREP_RENEWAL_BRIEF")]
    if signal_types & SUPPORT_RISK_SIGNAL_TYPES:
        steps.append(StepInput(action_type="ESCALATE_SUPPORT_RISK"))
    return PlanDraftInput(steps=steps)
