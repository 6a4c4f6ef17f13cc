"""The deadline rules: per plan type and kind of wait, when to remind, how long past due the final deadline
is and what happens then.

Built on the item's due time (plans.inbox.due_at: the plan type's approval SLA from when the wait began,
brought forward to its renewal cut-off — what the inbox shows). Like the SLA these decide when to nag a
person and when to stop waiting, never what a plan may do, so they are not one of an approval's facts and
bump no plan-type version.
"""
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from plans.due import SLA_FIELD, InboxKind, due_at
from plans.plan_types import PLAN_TYPES, approval_sla


class FinalRule(StrEnum):
    SKIP_OR_PAUSE = "SKIP_OR_PAUSE"  # skip the waiting step when it is optional, else pause the plan
    PAUSE = "PAUSE"  # pause the plan with a POLICY layer (a person's resume lifts it)
    ABORT = "ABORT"  # abort the plan with DEADLINE_MISSED


# Which final rules make sense for which wait: a DRAFT cannot be paused, a PAUSED plan is paused already.
ALLOWED_FINAL_RULES = {
    InboxKind.DRAFT_APPROVAL: frozenset({FinalRule.ABORT}),
    InboxKind.STEP_APPROVAL: frozenset(FinalRule),
    InboxKind.APPROVAL_STALE: frozenset({FinalRule.ABORT}),
    InboxKind.PAUSED: frozenset({FinalRule.ABORT}),
}


@dataclass(frozen=True)
class DeadlineRule:
    remind_before: timedelta  # the reminder goes out this long before the item is due
    final_after: timedelta  # the final deadline: this long after due
    final_rule: FinalRule

    def __post_init__(self):
        if self.remind_before < timedelta(0) or self.final_after < timedelta(0):
            raise ValueError("remind_before and final_after are durations, not negative")


@dataclass(frozen=True)
class Deadlines:
    remind_at: datetime
    due_at: datetime
    final_at: datetime


# RENEWAL_DEFENSE stops 30 days before the renewal (renewal_cutoff_days): a DRAFT must be approved by day -40
# to leave its steps ten days, a waiting step or a stale approval be dealt with by day -35. A step nobody
# approved two days past due is skipped when optional (the plan goes on without it) or pauses the plan (a
# person decides); a plan stale or paused and left alone a week past due is aborted: by then nobody is going
# to act on it, and an aborted plan says why, where a forgotten one only expires.
RENEWAL_DEFENSE_RULES = {
    InboxKind.DRAFT_APPROVAL: DeadlineRule(timedelta(hours=12), timedelta(days=5), FinalRule.ABORT),
    InboxKind.STEP_APPROVAL: DeadlineRule(timedelta(hours=6), timedelta(days=2), FinalRule.SKIP_OR_PAUSE),
    InboxKind.APPROVAL_STALE: DeadlineRule(timedelta(hours=6), timedelta(days=7), FinalRule.ABORT),
    InboxKind.PAUSED: DeadlineRule(timedelta(hours=12), timedelta(days=7), FinalRule.ABORT),
}

# A plan type without rules of its own (and one this deploy does not know): reminders and escalation, and
# an abort only a week past due.
DEFAULT_RULES = {
    InboxKind.DRAFT_APPROVAL: DeadlineRule(timedelta(hours=4), timedelta(days=7), FinalRule.ABORT),
    InboxKind.STEP_APPROVAL: DeadlineRule(timedelta(hours=4), timedelta(days=7), FinalRule.PAUSE),
    InboxKind.APPROVAL_STALE: DeadlineRule(timedelta(hours=4), timedelta(days=7), FinalRule.ABORT),
    InboxKind.PAUSED: DeadlineRule(timedelta(hours=4), timedelta(days=7), FinalRule.ABORT),
}

DEADLINE_RULES: dict[str, dict[InboxKind, DeadlineRule]] = {"RENEWAL_DEFENSE": RENEWAL_DEFENSE_RULES}


def _check(rules: dict[str, dict[InboxKind, DeadlineRule]]) -> None:
    for plan_type, by_kind in rules.items():
        for kind, rule in by_kind.items():
            if rule.final_rule not in ALLOWED_FINAL_RULES[kind]:
                raise ValueError(f"{plan_type} {kind}: {rule.final_rule} cannot end that wait")


_check({**DEADLINE_RULES, "default": DEFAULT_RULES})


def rule_for(plan_type: str, kind: InboxKind) -> DeadlineRule:
    return DEADLINE_RULES.get(plan_type, DEFAULT_RULES)[kind]


def deadlines_of(kind: InboxKind, plan_type: str, waiting_since: datetime, renewal_date: date | None) -> Deadlines:
    """The item's reminder, due and final times around its due time (the inbox's: the SLA's, brought forward
    to the SLA's renewal cut-off)."""
    rule = rule_for(plan_type, kind)
    due = due_at(kind, plan_type, waiting_since, renewal_date)
    return Deadlines(remind_at=due - rule.remind_before, due_at=due, final_at=due + rule.final_after)


def earliest_reminder_lead(kind: InboxKind) -> timedelta:
    """The shortest wait after which any plan type's item of `kind` may be due soon (its SLA less the longest
    reminder lead): items waiting less than this need nothing yet, whatever their type (the renewal aside)."""
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    # An unknown type ("") has the default SLA and rules.
    plan_types = [*PLAN_TYPES, ""]
    slas = [due_at(kind, plan_type, epoch) - epoch for plan_type in plan_types]
    return max(timedelta(0), min(slas) - max(rule_for(plan_type, kind).remind_before for plan_type in plan_types))


def renewal_horizon(kind: InboxKind) -> int | None:
    """Days from today within which a renewal brings some item of `kind` forward to due soon, or None."""
    field = SLA_FIELD[kind]
    days = [approval_sla(plan_type).due_before_renewal_days[field] for plan_type in PLAN_TYPES
            if field in approval_sla(plan_type).due_before_renewal_days]
    if not days:
        return None
    reminders = max(rule_for(plan_type, kind).remind_before for plan_type in [*PLAN_TYPES, ""])
    return max(days) + reminders.days + 1
