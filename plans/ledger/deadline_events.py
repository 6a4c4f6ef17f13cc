"""Writers for deadlines and stuck plans: reminders and escalations in the tenant's chain (one entry per run
and tenant, listing the items, so a run costs the same for 10 items as for 10,000), a missed deadline and a
stuck plan in the plan's own chain (they go with a move of the plan, or a re-drive of it)."""
from plans.ledger.chain import append
from plans.models import EventType, PlanLedgerEntry, RevenuePlan


def deadlines_noticed(tenant_id, *, event_type: EventType, actor: str, items: list[dict], recipient_ids: list[int]
                      ) -> PlanLedgerEntry:
    """DEADLINE_REMINDED (due soon) or DEADLINE_ESCALATED (overdue, the tenant's admins told): the items
    (item_key, kind, plan, step, waiting since, due, final) and the users mailed (ids, never addresses)."""
    if event_type not in (EventType.DEADLINE_REMINDED, EventType.DEADLINE_ESCALATED):
        raise ValueError(f"{event_type} is not a deadline notice")
    overdue = event_type == EventType.DEADLINE_ESCALATED
    return append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=event_type,
        actor=actor,
        reason_code="OVERDUE" if overdue else "DUE_SOON",
        explanation=(f"{len(items)} item(s) waiting for a person are overdue; the tenant's admins were told."
                     if overdue else f"{len(items)} item(s) waiting for a person are due soon; "
                                     "the people they wait on were reminded.")
                    + f" {len(recipient_ids)} user(s) mailed.",
        data={"items": items, "recipient_ids": sorted(recipient_ids)},
    )


def deadline_missed(plan: RevenuePlan, *, actor: str, item: dict, rule: str, outcome: str) -> PlanLedgerEntry:
    """The final deadline of a wait passed: the plan type's rule (`rule`) was applied, with `outcome`."""
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=item.get("step_id"),
        event_type=EventType.DEADLINE_MISSED,
        actor=actor,
        reason_code="DEADLINE_MISSED",
        explanation=f"Nobody ended the wait ({item['kind']}) by its final deadline {item['final_at']} "
                    f"(due {item['due_at']}): {outcome}",
        data={"item": item, "rule": rule, "outcome": outcome},
    )


def stuck_detected(plan: RevenuePlan, *, actor: str, last_seen: dict, redriven: bool) -> PlanLedgerEntry:
    """An ACTIVE plan nothing moved although it waits on no person and no clock: what was last seen of it."""
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.STUCK_DETECTED,
        actor=actor,
        reason_code="NO_PROGRESS",
        explanation=f"The plan is ACTIVE but nothing moved it since {last_seen['last_progress_at']}, and it waits "
                    "on no person and no clock."
                    + (" It was made due, so the next tick advances it." if redriven else
                       " It was re-driven once already in this episode; a person should look at it."),
        data={"last_seen": last_seen, "redriven": redriven},
    )
