"""The plan state evaluator (DESIGN §3.4): is a plan done, expired, or still running — and why.

Pure functions: the caller gathers the signals and the clock; every decision returns the facts it
used, which go to the ledger with the transition.
"""
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from plans.lifecycle import is_terminal
from plans.models import PlanStatus, StepStatus
from plans.plan_types import PlanTypeConfig, plan_type_config_for
from plans.schemas import RevenuePlanV1

OBJECTIVE_MET = "objective_met"
ALL_STEPS_DONE = "all_steps_done"
EXPIRED = "expired"

SUCCEEDED_STEP_STATUSES = frozenset({StepStatus.DONE, StepStatus.AUTO_EXECUTED})
FINISHED_OPTIONAL_STEP_STATUSES = SUCCEEDED_STEP_STATUSES | {StepStatus.SKIPPED}


class Outcome(StrEnum):
    CONTINUE = "CONTINUE"
    COMPLETE = "COMPLETE"
    EXPIRE = "EXPIRE"


@dataclass(frozen=True)
class SignalFact:
    signal_type: str
    observed_at: datetime


@dataclass(frozen=True)
class Evaluation:
    outcome: Outcome
    reason: str = ""
    facts: dict = field(default_factory=dict)


def renewal_cutoff(config: PlanTypeConfig, renewal_date: date) -> datetime:
    """Day -30 of a renewal, as the start of that day in UTC."""
    return datetime.combine(renewal_date - timedelta(days=config.renewal_cutoff_days), time.min, tzinfo=UTC)


def expires_at_for(config: PlanTypeConfig, *, renewal_date: date | None, created_at: datetime) -> datetime:
    if renewal_date is not None:
        return renewal_cutoff(config, renewal_date)
    return created_at + timedelta(days=config.expires_at_days_from_creation)


def objective_met(
    plan: RevenuePlanV1, config: PlanTypeConfig, signals: Sequence[SignalFact], renewal_date: date | None
) -> tuple[bool, dict]:
    """RENEWAL_DEFENSE: a commitment signal observed after the plan began and before day -30.

    Signals from before the plan was created belong to an earlier renewal cycle, so they do not count.
    """
    deadline = renewal_cutoff(config, renewal_date) if renewal_date else plan.expires_at
    matching = sorted(
        (
            signal
            for signal in signals
            if signal.signal_type in config.objective_signal_types and plan.created_at <= signal.observed_at < deadline
        ),
        key=lambda signal: signal.observed_at,
    )
    facts = {"objective_deadline": deadline.isoformat(), "objective_signal_types": list(config.objective_signal_types)}
    if matching:
        first = matching[0]
        facts["objective_signal"] = {"signal_type": first.signal_type, "observed_at": first.observed_at.isoformat()}
    return bool(matching), facts


def all_steps_done(plan: RevenuePlanV1) -> tuple[bool, dict]:
    unfinished = [
        str(step.step_id)
        for step in plan.steps
        if step.status not in (SUCCEEDED_STEP_STATUSES if step.required else FINISHED_OPTIONAL_STEP_STATUSES)
    ]
    facts = {
        "step_statuses": {str(step.step_id): str(step.status) for step in plan.steps},
        "unfinished_steps": unfinished,
    }
    return bool(plan.steps) and not unfinished, facts


def evaluate(
    plan: RevenuePlanV1, *, signals: Sequence[SignalFact], renewal_date: date | None, now: datetime
) -> Evaluation:
    """Objective first, then all steps done (ACTIVE plans only), then expiry (any non-terminal plan)."""
    config = plan_type_config_for(plan)
    facts: dict = {"evaluated_at": now.isoformat(), "expires_at": plan.expires_at.isoformat()}
    if config is not None and plan.plan_status == PlanStatus.ACTIVE:
        met, objective_facts = objective_met(plan, config, signals, renewal_date)
        facts.update(objective_facts)
        if met:
            return Evaluation(Outcome.COMPLETE, OBJECTIVE_MET, facts)
        done, step_facts = all_steps_done(plan)
        facts.update(step_facts)
        if done:
            return Evaluation(Outcome.COMPLETE, ALL_STEPS_DONE, facts)
    # A terminal plan is settled; expiring it again would ask for a move the lifecycle refuses.
    if not is_terminal(plan.plan_status) and now >= plan.expires_at:
        return Evaluation(Outcome.EXPIRE, EXPIRED, facts)
    return Evaluation(Outcome.CONTINUE, "", facts)
