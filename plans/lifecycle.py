"""The plan state machine (DESIGN §3.2): which move takes a plan from which statuses to which."""
from dataclasses import dataclass
from enum import StrEnum

from plans.models import EventType, PlanStatus

# The refusal codes of the moves below (the API answers each with 409; UI and tests depend on them).
INVALID_TRANSITION = "INVALID_TRANSITION"
REQUIRED_STEP = "REQUIRED_STEP"
STEP_NOT_SKIPPABLE = "STEP_NOT_SKIPPABLE"
STEP_NOT_AWAITING_APPROVAL = "STEP_NOT_AWAITING_APPROVAL"

TERMINAL = frozenset({PlanStatus.COMPLETED, PlanStatus.ABORTED, PlanStatus.EXPIRED})
NON_TERMINAL = frozenset(set(PlanStatus) - TERMINAL)


class Move(StrEnum):
    APPROVE = "approve"
    ACTIVATE = "activate"
    PAUSE = "pause"
    RESUME = "resume"
    REVISE = "revise"
    ABORT = "abort"
    EXPIRE = "expire"
    COMPLETE = "complete"


@dataclass(frozen=True)
class MoveRule:
    sources: frozenset[PlanStatus]
    target: PlanStatus
    event_type: EventType
    # The timestamp column the move stamps (None: it stamps nothing but updated_at).
    stamps: str | None


MOVES: dict[Move, MoveRule] = {
    Move.APPROVE: MoveRule(frozenset({PlanStatus.DRAFT}), PlanStatus.APPROVED, EventType.PLAN_APPROVED, "approved_at"),
    Move.ACTIVATE: MoveRule(
        frozenset({PlanStatus.APPROVED}), PlanStatus.ACTIVE, EventType.PLAN_ACTIVATED, "activated_at"
    ),
    Move.PAUSE: MoveRule(frozenset({PlanStatus.ACTIVE}), PlanStatus.PAUSED, EventType.PLAN_PAUSED, "paused_at"),
    Move.RESUME: MoveRule(frozenset({PlanStatus.PAUSED}), PlanStatus.ACTIVE, EventType.PLAN_RESUMED, None),
    Move.REVISE: MoveRule(
        frozenset({PlanStatus.APPROVED, PlanStatus.ACTIVE, PlanStatus.PAUSED}),
        PlanStatus.DRAFT,
        EventType.PLAN_REVISED,
        None,
    ),
    Move.ABORT: MoveRule(NON_TERMINAL, PlanStatus.ABORTED, EventType.PLAN_ABORTED, "aborted_at"),
    Move.EXPIRE: MoveRule(NON_TERMINAL, PlanStatus.EXPIRED, EventType.PLAN_EXPIRED, "expired_at"),
    Move.COMPLETE: MoveRule(
        frozenset({PlanStatus.ACTIVE}), PlanStatus.COMPLETED, EventType.PLAN_COMPLETED, "completed_at"
    ),
}

ALLOWED_TRANSITIONS: frozenset[tuple[PlanStatus, PlanStatus]] = frozenset(
    (source, rule.target) for rule in MOVES.values() for source in rule.sources
)


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def can_move(status: str, move: Move) -> bool:
    return status in MOVES[move].sources
