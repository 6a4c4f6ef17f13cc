"""Writers for a tenant's chain: changes to its settings (connector configs, action routes, memberships).

Every entry says who (the actor), what (`subject`: which setting), the kind of change and the values
before and after it (`None` before a creation and after a removal), with the keys that changed. The
callers mask secrets before they get here — a secret is recorded as "set", and a change of it only
by its key in `changed` — and they write nothing for a change that changes nothing.
"""
from uuid import UUID

from plans.ledger.chain import append
from plans.models import EventType, PlanLedgerEntry

CREATED, UPDATED, DELETED = "CREATED", "UPDATED", "DELETED"


def _setting_changed(tenant_id: UUID, *, event_type: EventType, actor: str, subject: dict, before: dict | None,
                     after: dict | None, changed: list[str], explanation: str) -> PlanLedgerEntry:
    if not changed:
        raise ValueError("a change that changes nothing is not ledgered")
    change = CREATED if before is None else DELETED if after is None else UPDATED
    return append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=event_type,
        actor=actor,
        reason_code=change,
        explanation=explanation,
        data={"subject": subject, "change": change, "before": before, "after": after, "changed": sorted(changed)},
    )


def connector_config_changed(tenant_id: UUID, *, actor: str, connector: str, before: dict | None,
                             after: dict | None, changed: list[str]) -> PlanLedgerEntry:
    """`before`/`after`: the settings with their secrets masked; `changed`: every key whose real value changed."""
    what = "created" if before is None else "removed" if after is None else "changed"
    return _setting_changed(
        tenant_id, event_type=EventType.CONNECTOR_CONFIG_CHANGED, actor=actor, subject={"connector": connector},
        before=before, after=after, changed=changed,
        explanation=f"The {connector} connector settings were {what} ({', '.join(sorted(changed))}).",
    )


def action_route_changed(tenant_id: UUID, *, actor: str, action_type: str, before: str | None,
                         after: str | None) -> PlanLedgerEntry:
    """`before`/`after`: the connector the action type was / is routed to (None: the catalogue's own)."""
    if after is None:
        explanation = f"{action_type} no longer has a route of its own (it was sent to {before})."
    else:
        explanation = f"{action_type} is now sent to the {after} connector" + (f" (was {before})." if before else ".")
    return _setting_changed(
        tenant_id, event_type=EventType.ACTION_ROUTE_CHANGED, actor=actor, subject={"action_type": action_type},
        before=None if before is None else {"connector": before}, after=None if after is None else {"connector": after},
        changed=["connector"], explanation=explanation,
    )


def membership_changed(tenant_id: UUID, *, actor: str, member, before: dict | None, after: dict,
                       ) -> PlanLedgerEntry:
    """`member`: the user whose membership changed; `before`/`after`: {"role", "is_active"}."""
    changed = [key for key in after if before is None or before.get(key) != after[key]]
    if before is None:
        explanation = f"{member.username} joined the tenant as {after['role']}."
    elif not after["is_active"] and before["is_active"]:
        explanation = f"{member.username}'s membership ({before['role']}) was deactivated."
    else:
        explanation = f"{member.username}'s membership changed: " + ", ".join(
            f"{key} {before[key]} -> {after[key]}" for key in sorted(changed)) + "."
    return _setting_changed(
        tenant_id, event_type=EventType.MEMBERSHIP_CHANGED, actor=actor,
        subject={"user_id": member.pk, "username": member.username}, before=before, after=after, changed=changed,
        explanation=explanation,
    )
