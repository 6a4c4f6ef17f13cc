"""Keeping plans.wait_models.PlanWait: the rows of the plans the triggers marked, rebuilt from the plan, its
steps, its open layers and its account before the inbox reads them (refresh), and by the beat for tenants
whose inbox nobody opens (plans.tasks.refresh_waits).

A refresh locks the marks it takes (FOR UPDATE SKIP LOCKED), rebuilds those plans' rows and removes the
marks, in one transaction: a writer that marks one of those plans again meanwhile waits for it, then leaves
a new mark for the next refresh (a mark is an update of its row: plans.wait_models). One refresh at a time per tenant (a
transaction-scoped advisory lock), so two never rebuild the same plan at once, and a read that waited for
another sees what it built. Reading a tenant with nothing marked costs one query.
"""
from collections.abc import Iterable
from uuid import UUID

from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Coalesce

from plans.due import InboxKind, due_at, sla_fingerprint
from plans.models import (
    EventType,
    PauseKind,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    StepStatus,
)
from plans.services.layers import LIFTED_BY_RESUME
from plans.wait_models import PlanWait, PlanWaitMark, WaitSource

# The layer kinds a person lifts (plans.inbox.PERSON_LIFTED_LAYERS, tested equal) and the column of each.
LAYER_COLUMNS = {PauseKind.PERSON: "first_person", PauseKind.POLICY: "first_policy",
                 PauseKind.RETRY_LIMIT: "first_retry_limit", PauseKind.APPROVAL_STALE: "first_approval_stale",
                 PauseKind.OWNER_INACTIVE: "first_owner_inactive"}
# Plans rebuilt per transaction: a writer that marks one of them waits for the transaction's end.
BATCH = 500
# The advisory lock's first key, for refreshes (the second is the tenant's hash).
_LOCK_CLASS = 7_301

_PLAN_FIELDS = ("id", "tenant_id", "plan_status", "plan_type", "risk_level", "created_by", "edited_by_since_approval",
                "owner_id", "account__owner_id", "account__renewal_date", "updated_at", "activated_at", "paused_at")


def refresh(tenant_ids: Iterable[UUID]) -> int:
    """Rebuild the rows of the plans marked in `tenant_ids`; returns how many plans were rebuilt."""
    tenants = sorted(set(tenant_ids))
    rebuilt = 0
    while tenants and PlanWaitMark.objects.filter(tenant_id__in=tenants).exists():
        with transaction.atomic():
            with connection.cursor() as cursor:
                # In tenant order, so two refreshes of overlapping tenants cannot deadlock.
                cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(tenant::text)) "
                               "FROM unnest(%s::uuid[]) AS tenant ORDER BY tenant", [_LOCK_CLASS, tenants])
            # Locked now, in plan order, skipping those a writer is marking again (its commit leaves them for the
            # next refresh): a refresh never waits for a writer, so it cannot deadlock with one.
            plan_ids = list(PlanWaitMark.objects.select_for_update(skip_locked=True).filter(tenant_id__in=tenants)
                            .order_by("plan_id").values_list("plan_id", flat=True)[:BATCH])
            if not plan_ids:
                break  # another refresh took them while this one waited for the lock, or writers hold them
            PlanWait.objects.filter(plan_id__in=plan_ids).delete()
            PlanWait.objects.bulk_create(rows_for(plan_ids))
            PlanWaitMark.objects.filter(plan_id__in=plan_ids).delete()
        rebuilt += len(plan_ids)
    return rebuilt


def refresh_all() -> int:
    """Every tenant's marked plans (the beat's job, and after a bulk load)."""
    return refresh(PlanWaitMark.objects.values_list("tenant_id", flat=True).distinct())


def rows_for(plan_ids: list[UUID]) -> list[PlanWait]:
    """The waits of these plans as they are now (none for a plan that waits for nobody): three reads."""
    plans = {row[0]: dict(zip(_PLAN_FIELDS, row, strict=True)) for row in RevenuePlan.objects.filter(
        id__in=plan_ids, plan_status__in=[PlanStatus.DRAFT, PlanStatus.ACTIVE, PlanStatus.PAUSED]
    ).values_list(*_PLAN_FIELDS)}
    by_status: dict[str, list[UUID]] = {}
    for plan in plans.values():
        by_status.setdefault(plan["plan_status"], []).append(plan["id"])
    due_key = sla_fingerprint()
    rows = [_row(plans[plan_id], WaitSource.DRAFT, since=plans[plan_id]["updated_at"], due_key=due_key)
            for plan_id in by_status.get(PlanStatus.DRAFT, [])]
    rows += [_row(plans[plan_id], WaitSource.STEP, step_id=step_id, due_key=due_key, since=since)
             for plan_id, step_id, since in _steps_awaiting(by_status.get(PlanStatus.ACTIVE, []))]
    layers: dict[UUID, list[tuple[str, object]]] = {}
    paused_ids = by_status.get(PlanStatus.PAUSED, [])
    for plan_id, kind, set_at in (PauseLayer.objects.filter(plan_id__in=paused_ids, lifted_at__isnull=True)
                                  .values_list("plan_id", "kind", "set_at")) if paused_ids else ():
        layers.setdefault(plan_id, []).append((kind, set_at))
    for plan_id in paused_ids:
        plan = plans[plan_id]
        rows.append(_row(plan, WaitSource.PAUSED, since=plan["paused_at"] or plan["updated_at"],
                         **_firsts(layers.get(plan_id, []))))
    return rows


def step_waiting_since() -> Coalesce:
    """When a step PENDING_APPROVAL began waiting, an expression on PlanStep: the engine's latest
    STEP_AWAITING_APPROVAL entry for it (the ledger's (plan, event_type) index finds it), else its plan's
    activation, else the plan's last update (the inbox's rule, and the deadline job's)."""
    awaiting = (PlanLedgerEntry.objects.filter(plan_id=OuterRef("plan_id"), step_id=OuterRef("step_id"),
                                               event_type=EventType.STEP_AWAITING_APPROVAL)
                .order_by("-chain_seq").values("occurred_at")[:1])
    return Coalesce(Subquery(awaiting), F("plan__activated_at"), F("plan__updated_at"))


def _steps_awaiting(active_ids: list[UUID]) -> list[tuple]:
    """(plan, step, since when) of the steps waiting for a person in these ACTIVE plans."""
    if not active_ids:
        return []
    return list(PlanStep.objects.filter(plan_id__in=active_ids, status=StepStatus.PENDING_APPROVAL)
                .annotate(waiting_since=step_waiting_since()).values_list("plan_id", "step_id", "waiting_since"))


def _firsts(layers: list[tuple[str, object]]) -> dict:
    """The earliest open layer of each kind a person lifts, of any kind, and of any kind a resume leaves."""
    firsts = {column: min((set_at for kind, set_at in layers if kind == layer_kind), default=None)
              for layer_kind, column in LAYER_COLUMNS.items()}
    firsts["first_held"] = min((set_at for _, set_at in layers), default=None)
    firsts["first_not_by_resume"] = min((set_at for kind, set_at in layers if kind not in LIFTED_BY_RESUME),
                                        default=None)
    return firsts


_DUE_KIND = {WaitSource.DRAFT: InboxKind.DRAFT_APPROVAL, WaitSource.STEP: InboxKind.STEP_APPROVAL}


def _row(plan: dict, source: WaitSource, *, since, step_id: UUID | None = None, due_key: str = "",
         **firsts) -> PlanWait:
    """A PAUSED plan's due time is the caller's (it depends on the layers they may lift): not stored."""
    due = due_at(_DUE_KIND[source], plan["plan_type"], since, plan["account__renewal_date"]) if due_key else None
    return PlanWait(tenant_id=plan["tenant_id"], plan_id=plan["id"], source=source, step_id=step_id,
                    plan_type=plan["plan_type"], risk_level=plan["risk_level"], created_by=plan["created_by"],
                    edited_by_since_approval=plan["edited_by_since_approval"] or [], owner_id=plan["owner_id"],
                    account_owner_id=plan["account__owner_id"], renewal_date=plan["account__renewal_date"],
                    since=since, due_at=due, due_key=due_key, **firsts)
