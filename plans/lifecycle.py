"""The plan and step state machines (DESIGN §3.2, §3.3): which move takes a plan, or a step, from
which statuses to which. Pure tables; plans.services makes the moves."""
from dataclasses import dataclass
from enum import StrEnum

from plans.errors import Reason
from plans.models import EventType, PlanStatus, StepStatus

# The refusal codes of the moves below (the API answers each with 409; UI and tests depend on them).
INVALID_TRANSITION = "INVALID_TRANSITION"
REQUIRED_STEP = "REQUIRED_STEP"
STEP_NOT_SKIPPABLE = "STEP_NOT_SKIPPABLE"
STEP_NOT_AWAITING_APPROVAL = "STEP_NOT_AWAITING_APPROVAL"
STEP_NOT_FAILED = "STEP_NOT_FAILED"

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


# --- steps (DESIGN §3.3) --------------------------------------------------------------------------


class StepMove(StrEnum):
    AWAIT_APPROVAL = "await_approval"  # the autonomy policy wants a person's approval first
    APPROVE = "approve"  # a person approved it; it runs on the next advance
    SUCCEED = "succeed"  # its attempt succeeded after a person's approval or under the approved plan
    AUTO_SUCCEED = "auto_succeed"  # its attempt succeeded, run on its own by the autonomy policy
    FAIL = "fail"  # its last allowed attempt failed
    SKIP = "skip"  # a person skipped it (optional steps only)
    RETRY = "retry"  # a person starts a new series of attempts for a step that failed at its limit
    CLOSE = "close"  # the plan ended while the step waited: SKIPPED with the plan's reason
    # A FAILED step whose content the revision changed runs again as a new series once the plan is
    # approved (plans.services.moves.plan_approve, made just before the DRAFT → APPROVED move).
    RESET = "reset"


@dataclass(frozen=True)
class StepMoveRule:
    sources: frozenset[StepStatus]
    target: StepStatus
    # The plan statuses the move may be made in; in any other the move is an INVALID_TRANSITION.
    plan_statuses: frozenset[PlanStatus]
    # The code of the refusal when the step is in none of `sources`.
    refused_as: str
    # How a refusal sentence names the move: "A DONE step cannot be <described>".
    described: str
    # Only an optional step may make it; a required one is refused with REQUIRED_STEP.
    optional_only: bool = False


# An attempt's outcome is a fact: it is recorded whatever became of the plan while the attempt ran
# (paused, revised, aborted meanwhile).
_ANY_PLAN_STATUS = frozenset(PlanStatus)
_PEOPLE_MAY_SKIP_IN = frozenset({PlanStatus.APPROVED, PlanStatus.ACTIVE, PlanStatus.PAUSED})

STEP_MOVES: dict[StepMove, StepMoveRule] = {
    StepMove.AWAIT_APPROVAL: StepMoveRule(
        frozenset({StepStatus.PENDING}), StepStatus.PENDING_APPROVAL, frozenset({PlanStatus.ACTIVE}),
        INVALID_TRANSITION, "put to wait for approval",
    ),
    StepMove.APPROVE: StepMoveRule(
        frozenset({StepStatus.PENDING_APPROVAL}), StepStatus.PENDING, frozenset({PlanStatus.ACTIVE}),
        STEP_NOT_AWAITING_APPROVAL, "approved",
    ),
    StepMove.SUCCEED: StepMoveRule(
        frozenset({StepStatus.PENDING}), StepStatus.DONE, _ANY_PLAN_STATUS, INVALID_TRANSITION, "marked done",
    ),
    StepMove.AUTO_SUCCEED: StepMoveRule(
        frozenset({StepStatus.PENDING}), StepStatus.AUTO_EXECUTED, _ANY_PLAN_STATUS, INVALID_TRANSITION,
        "marked auto-executed",
    ),
    StepMove.FAIL: StepMoveRule(
        frozenset({StepStatus.PENDING}), StepStatus.FAILED, _ANY_PLAN_STATUS, INVALID_TRANSITION, "marked failed",
    ),
    StepMove.SKIP: StepMoveRule(
        frozenset({StepStatus.PENDING, StepStatus.PENDING_APPROVAL, StepStatus.FAILED}), StepStatus.SKIPPED,
        _PEOPLE_MAY_SKIP_IN, STEP_NOT_SKIPPABLE, "skipped", optional_only=True,
    ),
    StepMove.RETRY: StepMoveRule(
        frozenset({StepStatus.FAILED}), StepStatus.PENDING, frozenset({PlanStatus.ACTIVE, PlanStatus.PAUSED}),
        STEP_NOT_FAILED, "retried",
    ),
    StepMove.RESET: StepMoveRule(
        frozenset({StepStatus.FAILED}), StepStatus.PENDING, frozenset({PlanStatus.DRAFT}),
        STEP_NOT_FAILED, "reset for a new series",
    ),
    StepMove.CLOSE: StepMoveRule(
        frozenset({StepStatus.PENDING, StepStatus.PENDING_APPROVAL}), StepStatus.SKIPPED, TERMINAL,
        INVALID_TRANSITION, "closed with its plan",
    ),
}

ALLOWED_STEP_TRANSITIONS: frozenset[tuple[StepStatus, StepStatus]] = frozenset(
    (source, rule.target) for rule in STEP_MOVES.values() for source in rule.sources
)


def step_move_refusal(move: StepMove, *, plan_status: str, step_status: str, required: bool) -> Reason | None:
    """Why the table refuses `move` for a step in `step_status` of a plan in `plan_status` (None: allowed).

    Checked in this order, so each refusal names the first thing that is wrong: the plan, then the
    step's kind, then its status.
    """
    rule = STEP_MOVES[move]
    if plan_status not in rule.plan_statuses:
        return Reason(INVALID_TRANSITION, f"Steps of a {plan_status} plan cannot be {rule.described}.")
    if rule.optional_only and required:
        return Reason(REQUIRED_STEP, f"A required step cannot be {rule.described}.")
    if step_status not in rule.sources:
        allowed = " or ".join(sorted(rule.sources))
        return Reason(rule.refused_as,
                      f"A {step_status} step cannot be {rule.described}; only a {allowed} step can.")
    return None


def step_can_move(move: StepMove, *, plan_status: str, step_status: str, required: bool = False) -> bool:
    return step_move_refusal(move, plan_status=plan_status, step_status=step_status, required=required) is None
