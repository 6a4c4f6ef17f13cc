"""Writers for a tenant's chain: events that belong to no plan (ownership, kill switches, autonomy, digests)."""
from datetime import timedelta
from uuid import UUID

from plans.ledger.chain import append, lock_tenant_chain
from plans.models import EventType, PlanLedgerEntry

# A transaction that appended before a digest may commit just after it; the next digest looks
# back this far so such a head is still recorded. No plan transaction runs for an hour.
DIGEST_OVERLAP = timedelta(hours=1)


def account_owner_changed(account, *, actor: str, old_owner_id, new_owner_id, plan_ids: list,
                          reason: str = "") -> PlanLedgerEntry:
    because = f": {reason.rstrip('.')}" if reason else ""
    return append(
        tenant_id=account.tenant_id,
        plan_id=None,
        event_type=EventType.ACCOUNT_OWNER_CHANGED,
        actor=actor,
        reason_code="OWNERSHIP_CHANGED",
        explanation=f"Account {account.name} moved from user {old_owner_id} to user {new_owner_id}{because}.",
        data={
            "account_id": str(account.id),
            "old_owner_id": old_owner_id,
            "new_owner_id": new_owner_id,
            "reason": reason,
            "plan_ids": [str(plan_id) for plan_id in plan_ids],
        },
    )


def kill_switch_flipped(tenant_id: UUID, *, actor: str, action_type: str, engaged: bool, reason: str):
    scope = f"action type {action_type}" if action_type else "the whole tenant"
    return append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=EventType.KILL_SWITCH_FLIPPED,
        actor=actor,
        reason_code="KILL_SWITCH_ENGAGED" if engaged else "KILL_SWITCH_RELEASED",
        explanation=f"Execution {'stopped' if engaged else 'allowed again'} for {scope}: {reason}",
        data={"action_type": action_type, "engaged": engaged, "reason": reason},
    )


def autonomy_changed(tenant_id: UUID, *, actor: str, reason_code: str, explanation: str, data: dict):
    """A tenant's autonomy settings changed (mode, opt-in, budget): who, what, from what to what."""
    return append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=EventType.AUTONOMY_CHANGED,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation,
        data=data,
    )


def tenant_digest(tenant_id: UUID, *, actor: str) -> PlanLedgerEntry:
    """Record the head of every plan chain that changed since the previous digest."""
    lock_tenant_chain(tenant_id)
    previous = (
        PlanLedgerEntry.objects.filter(tenant_id=tenant_id, plan__isnull=True, event_type=EventType.LEDGER_DIGEST)
        .order_by("-chain_seq")
        .first()
    )
    heads = PlanLedgerEntry.objects.filter(tenant_id=tenant_id, plan__isnull=False)
    if previous is not None:
        changed_plan_ids = (
            PlanLedgerEntry.objects.filter(
                tenant_id=tenant_id, plan__isnull=False, occurred_at__gte=previous.occurred_at - DIGEST_OVERLAP
            )
            .values("plan_id")
            .distinct()
        )
        heads = heads.filter(plan_id__in=changed_plan_ids)
    head_rows = heads.order_by("plan_id", "-chain_seq").distinct("plan_id").values_list(
        "plan_id", "chain_seq", "entry_hash"
    )
    recorded = {str(plan_id): {"chain_seq": seq, "entry_hash": entry_hash} for plan_id, seq, entry_hash in head_rows}
    return append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=EventType.LEDGER_DIGEST,
        actor=actor,
        explanation=f"Digest of {len(recorded)} plan chain head(s).",
        data={"plan_heads": recorded},
    )
