"""DecisionCostGate: may a trigger run the proposal generator for this account now? (seed doc 002, §2.2.1)

Pure and deterministic: ALLOW | DEFER | SKIP with a reason and a sentence. The trigger job gathers
the facts under the tenant's lock and records every verdict (orchestrator.autonomy.triggers).
"""
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class GateReason(StrEnum):
    OPEN_PLAN_EXISTS = "OPEN_PLAN_EXISTS"
    COOLDOWN = "COOLDOWN"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    WORTH_PROPOSING = "WORTH_PROPOSING"


@dataclass(frozen=True)
class GateFacts:
    now: datetime
    has_open_plan: bool
    last_allowed_at: datetime | None
    cooldown_days: int
    proposals_today: int
    daily_budget: int

    def as_dict(self) -> dict:
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class GateVerdict:
    decision: str  # GateDecision
    reason: GateReason
    explanation: str


def decide(facts: GateFacts) -> GateVerdict:
    if facts.has_open_plan:
        # Nothing to gain: a plan of this type is already open for the account.
        return GateVerdict("SKIP", GateReason.OPEN_PLAN_EXISTS, "The account already has an open plan of this type.")
    if facts.last_allowed_at is not None:
        until = facts.last_allowed_at + timedelta(days=facts.cooldown_days)
        if facts.now < until:
            return GateVerdict("DEFER", GateReason.COOLDOWN,
                               f"A plan was proposed for this account on {facts.last_allowed_at:%Y-%m-%d}; "
                               f"the next proposal may come after {until:%Y-%m-%d %H:%M} UTC.")
    if facts.proposals_today >= facts.daily_budget:
        return GateVerdict("SKIP", GateReason.BUDGET_EXHAUSTED,
                           f"Today's proposal budget ({facts.daily_budget}) is spent; tomorrow's run looks again.")
    return GateVerdict("ALLOW", GateReason.WORTH_PROPOSING,
                       f"In its renewal window with no open plan; {facts.proposals_today + 1} of "
                       f"{facts.daily_budget} proposals today.")
