"""Plan type configs and the action-type catalogue (DESIGN §3.7). Static: a change is a deploy."""
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from plans.models import RiskLevel


class StepParameters(BaseModel):
    """What a step's parameters may say to its connector. Keys a connector reads are typed and bounded
    here, so a bad value is a 400 when the plan is written, not a failure days later when the step
    runs; other keys are notes the connector passes along (the JSON's size is bounded elsewhere)."""

    model_config = ConfigDict(extra="allow")

    subject: str | None = Field(default=None, min_length=1, max_length=200)


class MeetingParameters(StepParameters):
    """REQUEST_RENEWAL_MEETING: when the draft meeting starts (with a timezone) and how long it lasts."""

    start: str | None = Field(default=None, max_length=64)
    duration_minutes: StrictInt | None = Field(default=None, ge=5, le=480)

    @field_validator("start")
    @classmethod
    def start_is_an_iso_datetime_with_a_timezone(cls, start: str | None) -> str | None:
        # The calendar connector reads it with datetime.fromisoformat: check it the same way.
        if start is not None and datetime.fromisoformat(start).tzinfo is None:
            raise ValueError("start needs a timezone, e.g. 2026-03-02T15:00:00+00:00")
        return start


@dataclass(frozen=True)
class ActionTypeSpec:
    action_type: str
    risk_level: RiskLevel
    external_contact: bool
    connector: str
    required: bool
    # Connector calls per intent before a transient failure becomes FAILED (the execution spine's retries).
    max_attempts: int
    parameters_model: type[StepParameters] = StepParameters


@dataclass(frozen=True)
class ApprovalSla:
    """How long each kind of wait for a person may last before it is overdue: due_at = waiting since + this.

    The approver's inbox (plans.inbox) sorts by it and flags what is overdue; reminders and escalation
    build on the same numbers. Not one of an approval's facts: changing it bumps no config version and
    stales no approval (it decides when to nag a person, never what a plan may do)."""

    draft_approval: timedelta  # a DRAFT waiting for a plan approver, since it was proposed or last edited
    step_approval: timedelta  # a step PENDING_APPROVAL (the human touch), since it began to wait
    approval_stale: timedelta  # a PAUSED plan whose approval's facts drifted, since the layer was set
    paused: timedelta  # a PAUSED plan a person can lift (their pause, a policy refusal, a failed step)


# For a plan type without its own (and an unknown one): a working day for everything.
DEFAULT_APPROVAL_SLA = ApprovalSla(draft_approval=timedelta(hours=24), step_approval=timedelta(hours=24),
                                   approval_stale=timedelta(hours=24), paused=timedelta(hours=24))


@dataclass(frozen=True)
class PlanTypeConfig:
    plan_type: str
    version: int
    allowed_action_types: tuple[str, ...]
    # Relative order only: a plan may omit steps, but may not run them against this order.
    default_sequence: tuple[str, ...]
    retry_limit: int
    on_retry_limit: str  # "PAUSE" or "ABORT"
    expires_at_days_from_creation: int
    # A renewal plan stops this many days before the renewal date (DESIGN §3.4).
    renewal_cutoff_days: int
    objective_template: str
    objective_signal_types: tuple[str, ...]
    # The proposal generator drafts a plan once the renewal is at most this many days away.
    proposal_window_days: int = 120
    approval_sla: ApprovalSla = field(default=DEFAULT_APPROVAL_SLA)


ACTION_TYPES: dict[str, ActionTypeSpec] = {
    spec.action_type: spec
    for spec in (
        ActionTypeSpec("REQUEST_RENEWAL_MEETING", RiskLevel.MEDIUM, True, "calendar", True, max_attempts=3,
                       parameters_model=MeetingParameters),
        ActionTypeSpec("PREP_RENEWAL_BRIEF", RiskLevel.LOW, False, "internal", True, max_attempts=3),
        ActionTypeSpec("ESCALATE_SUPPORT_RISK", RiskLevel.HIGH, False, "crm", False, max_attempts=4),
    )
}

RENEWAL_DEFENSE = PlanTypeConfig(
    plan_type="RENEWAL_DEFENSE",
    version=1,
    allowed_action_types=("REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"),
    default_sequence=("REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"),
    retry_limit=3,
    on_retry_limit="PAUSE",
    expires_at_days_from_creation=60,
    renewal_cutoff_days=30,
    objective_template="Secure renewal before day -30",
    objective_signal_types=("RENEWAL_COMMITTED", "RENEWAL_CLOSED_WON"),
    # A renewal plan lives ~60 days and its meeting step has the customer waiting: a DRAFT gets two days
    # (a proposal made on Friday is due on Monday's first look, not in the weekend), a waiting step and a
    # stale approval one day, a paused plan three (a person paused it on purpose; it still must not rot).
    approval_sla=ApprovalSla(draft_approval=timedelta(hours=48), step_approval=timedelta(hours=24),
                             approval_stale=timedelta(hours=24), paused=timedelta(hours=72)),
)

PLAN_TYPES: dict[str, PlanTypeConfig] = {RENEWAL_DEFENSE.plan_type: RENEWAL_DEFENSE}

_RISK_ORDER = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2}


def get_plan_type_config(plan_type: str) -> PlanTypeConfig | None:
    return PLAN_TYPES.get(plan_type)


def approval_sla(plan_type: str) -> ApprovalSla:
    """The plan type's approval SLA; the default one for a type this deploy does not know."""
    config = get_plan_type_config(plan_type)
    return config.approval_sla if config else DEFAULT_APPROVAL_SLA


def get_action_type(action_type: str) -> ActionTypeSpec | None:
    return ACTION_TYPES.get(action_type)


def highest_risk(risk_levels) -> RiskLevel:
    """Risk accumulation (DESIGN §3.5): a plan is as risky as its riskiest step."""
    return max((RiskLevel(level) for level in risk_levels), key=_RISK_ORDER.__getitem__, default=RiskLevel.LOW)
