"""Reads of the ledger."""
from uuid import UUID

from plans.ledger.plan_events import STOP_EVENTS
from plans.models import EventType, PlanLedgerEntry, RevenuePlan


def why_plan_exists(plan_id: UUID) -> PlanLedgerEntry | None:
    """The creation entry: its data holds the trigger and the inputs the proposal used."""
    return PlanLedgerEntry.objects.filter(plan_id=plan_id, event_type=EventType.PLAN_CREATED).first()


def why_plan_stopped(plan: RevenuePlan) -> PlanLedgerEntry | None:
    """The entry that put a PAUSED or finished plan where it is (None while it runs or waits)."""
    event_type = STOP_EVENTS.get(plan.plan_status)
    if event_type is None:
        return None
    return PlanLedgerEntry.objects.filter(plan_id=plan.id, event_type=event_type).order_by("-chain_seq").first()
