"""Plan type configs and the action-type catalogue (DESIGN §3.7). Static: a change is a deploy.

Every version of a plan type's config stays in the catalogue: a plan runs on the version it was approved
with (RevenuePlan.plan_type_version, stamped at approval), so a deploy that adds a version changes only the
plans approved after it. A DRAFT has no approved version yet: it is checked against the latest, which its
approval will stamp. `manage.py migrate_plans` moves in-flight plans to another version explicitly.
"""
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from plans.models import PlanStatus, RiskLevel


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
    # Due no later than midnight (UTC) this many days before the account's renewal date, by the field names
    # above (absent: the duration alone): a wait that is fine in June is not fine a week before the renewal.
    due_before_renewal_days: Mapping[str, int] = field(default_factory=dict)


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
    # The plan stops 30 days before the renewal (renewal_cutoff_days): a DRAFT is due by day -40 at the latest
    # to leave its steps ten days, a waiting step or a stale approval by day -35.
    approval_sla=ApprovalSla(draft_approval=timedelta(hours=48), step_approval=timedelta(hours=24),
                             approval_stale=timedelta(hours=24), paused=timedelta(hours=72),
                             due_before_renewal_days={"draft_approval": 40, "step_approval": 35,
                                                      "approval_stale": 35}),
)

# Every version of every plan type, oldest first: a new version is appended, never edited in place (a plan
# approved on an old one keeps running on it until migrate_plans moves it).
PLAN_TYPE_VERSIONS: dict[str, dict[int, PlanTypeConfig]] = {
    RENEWAL_DEFENSE.plan_type: {RENEWAL_DEFENSE.version: RENEWAL_DEFENSE},
}

# The latest version of each plan type: what a new plan is proposed and approved on.
PLAN_TYPES: dict[str, PlanTypeConfig] = {
    plan_type: versions[max(versions)] for plan_type, versions in PLAN_TYPE_VERSIONS.items()
}

_RISK_ORDER = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2}


def get_plan_type_config(plan_type: str, version: int | None = None) -> PlanTypeConfig | None:
    """The config of `plan_type` at `version` (None: the latest). None for a type, or a version of it, this
    deploy does not know: the gates refuse such a plan (INVALID_PLAN_TYPE) rather than guess its rules."""
    latest = PLAN_TYPES.get(plan_type)
    if version is None or (latest is not None and latest.version == version):
        return latest
    return PLAN_TYPE_VERSIONS.get(plan_type, {}).get(version)


def plan_type_config_for(plan) -> PlanTypeConfig | None:
    """The config `plan` runs on (a RevenuePlan or a RevenuePlanV1): its approved version; for a DRAFT, the
    latest (the one its approval would stamp)."""
    if plan.plan_status == PlanStatus.DRAFT:
        return get_plan_type_config(plan.plan_type)
    return get_plan_type_config(plan.plan_type, plan.plan_type_version)


def plan_type_versions(plan_type: str) -> list[int]:
    """The versions of `plan_type` this deploy knows, oldest first."""
    return sorted(PLAN_TYPE_VERSIONS.get(plan_type, {}))


def objective_signal_types_of_any_version(plan_type: str) -> frozenset[str]:
    """The signal types that may meet the objective of a plan of `plan_type`, whichever version it runs on."""
    return frozenset(signal_type for config in PLAN_TYPE_VERSIONS.get(plan_type, {}).values()
                     for signal_type in config.objective_signal_types)


@contextlib.contextmanager
def catalogue_with(config: PlanTypeConfig) -> Iterator[PlanTypeConfig]:
    """For tests: the catalogue with `config` added as a version of its plan type (the latest if its number
    is the highest), as a deploy that adds it would have it; the catalogue as it was afterwards. Only in
    this process: a worker started meanwhile does not see it."""
    versions = PLAN_TYPE_VERSIONS.setdefault(config.plan_type, {})
    replaced_version, replaced_latest = versions.get(config.version), PLAN_TYPES.get(config.plan_type)
    versions[config.version] = config
    PLAN_TYPES[config.plan_type] = versions[max(versions)]
    try:
        yield config
    finally:
        if replaced_version is None:
            del versions[config.version]
        else:
            versions[config.version] = replaced_version
        if not versions:
            del PLAN_TYPE_VERSIONS[config.plan_type]
        if replaced_latest is None:
            PLAN_TYPES.pop(config.plan_type, None)
        else:
            PLAN_TYPES[config.plan_type] = replaced_latest


def approval_sla(plan_type: str, version: int | None = None) -> ApprovalSla:
    """The plan type's approval SLA (at `version`; None: the latest); the default one for a type or version
    this deploy does not know."""
    config = get_plan_type_config(plan_type, version)
    return config.approval_sla if config else DEFAULT_APPROVAL_SLA


# The action types' names, sorted: the choices a form or the API schema offers.
ACTION_TYPE_NAMES = tuple(sorted(ACTION_TYPES))


def get_action_type(action_type: str) -> ActionTypeSpec | None:
    return ACTION_TYPES.get(action_type)


def highest_risk(risk_levels) -> RiskLevel:
    """Risk accumulation (DESIGN §3.5): a plan is as risky as its riskiest step."""
    return max((RiskLevel(level) for level in risk_levels), key=_RISK_ORDER.__getitem__, default=RiskLevel.LOW)
