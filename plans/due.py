"""The kinds of wait for a person and when each is due: the plan type's approval SLA from when the wait began,
brought forward to its renewal cut-off (what the inbox sorts by, and what the deadline job reminds and escalates
by). Its own module because the inbox (plans.inbox), the rows it reads (plans.waits) and the deadline job all
use it; plans.inbox re-exports it.
"""
import hashlib
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from plans.plan_types import DEFAULT_APPROVAL_SLA, PLAN_TYPES, approval_sla


class InboxKind(StrEnum):
    DRAFT_APPROVAL = "DRAFT_APPROVAL"  # a DRAFT the caller may approve
    STEP_APPROVAL = "STEP_APPROVAL"  # a step of an ACTIVE plan PENDING_APPROVAL, the caller may approve it
    APPROVAL_STALE = "APPROVAL_STALE"  # a PAUSED plan whose approval's facts drifted; the caller may reapprove
    PAUSED = "PAUSED"  # a PAUSED plan held by layers the caller may lift (resume, retry or skip, transfer)


# Which of the plan type's ApprovalSla durations each kind is due by.
SLA_FIELD = {
    InboxKind.DRAFT_APPROVAL: "draft_approval",
    InboxKind.STEP_APPROVAL: "step_approval",
    InboxKind.APPROVAL_STALE: "approval_stale",
    InboxKind.PAUSED: "paused",
}


def due_at(kind: InboxKind, plan_type: str, waiting_since: datetime, renewal_date: date | None = None) -> datetime:
    """When a wait is due: the plan type's SLA from when it began, brought forward to the SLA's renewal cut-off
    for an account that renews (what the inbox shows, and what the deadline job reminds and escalates by)."""
    sla = approval_sla(plan_type)
    due = waiting_since + getattr(sla, SLA_FIELD[kind])
    days = sla.due_before_renewal_days.get(SLA_FIELD[kind])
    if days is not None and renewal_date is not None:
        due = min(due, datetime.combine(renewal_date - timedelta(days=days), time(0), tzinfo=UTC))
    return due


def sla_fingerprint() -> str:
    """A short name for the approval SLAs of the plan types this process knows: the stored due times
    (plans.waits) were computed under it, and a process with other SLAs computes its own instead."""
    catalogue = repr((DEFAULT_APPROVAL_SLA, sorted((name, config.approval_sla) for name, config in PLAN_TYPES.items())))
    return hashlib.sha256(catalogue.encode()).hexdigest()[:16]
