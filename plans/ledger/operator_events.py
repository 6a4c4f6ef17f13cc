"""Writers for a plan's chain about an operator's bulk work on it: a redrive of an incident, a move to
another version of its plan type's config."""
from uuid import UUID

from plans.ledger.chain import append, snapshot
from plans.models import EventType, PlanLedgerEntry, RevenuePlan


def incident_redriven(plan: RevenuePlan, *, step_id: UUID, actor: str, incident: dict, batch_id: str,
                      reason: str = "") -> PlanLedgerEntry:
    """The plan's failed step was retried as one of an incident group's plans (after its STEP_RETRIED
    entry: this one says it was a bulk action, which group and which batch)."""
    group = f"{incident['connector']} / {incident['action_type']} / {incident['failure_class']}"
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step_id,
        event_type=EventType.INCIDENT_REDRIVEN,
        actor=actor,
        reason_code="INCIDENT_REDRIVEN",
        explanation=f"Retried with the other plans of the incident {group} (batch {batch_id})"
        + (f": {reason.rstrip('.')}." if reason else "."),
        data={"incident": incident, "batch_id": batch_id, "reason": reason},
    )


def plan_type_migrated(plan: RevenuePlan, *, actor: str, from_version: int, to_version: int, changes: list[dict],
                       keep_approvals: bool) -> PlanLedgerEntry:
    """The plan now runs on `to_version` of its plan type's config (`plan` already moved)."""
    changed = "; ".join(f"{change['field']} {change['before']} -> {change['after']}" for change in changes)
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PLAN_TYPE_MIGRATED,
        actor=actor,
        reason_code="PLAN_TYPE_MIGRATED",
        explanation=f"Moved from {plan.plan_type} version {from_version} to version {to_version}"
        + (f" ({changed})" if changed else " (no rule changed)")
        + ("; its approval kept by a tenant admin." if keep_approvals else "; it needs a reapproval."),
        data={"from_version": from_version, "to_version": to_version, "changes": changes,
              "keep_approvals": keep_approvals, "plan": snapshot(plan)},
    )
