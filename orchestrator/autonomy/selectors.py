"""Reads for the autonomy control API, each scoped to one tenant the caller belongs to."""
import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from orchestrator.execution.models import ActionIntent, ExecutionAttempt
from plans.errors import NotFound, ValidationFailed
from plans.models import KillSwitch, PlanLedgerEntry
from plans.selectors import active_memberships, visible_to

EXPORT_CHUNK = 2000
EXPORT_FLUSH_BYTES = 64_000
EXPORT_FIELDS = ("entry_id", "tenant_id", "plan_id", "step_id", "chain_seq", "event_type", "actor", "reason_code",
                 "explanation", "data", "occurred_at", "prev_hash", "entry_hash")


def tenant_for_user(user, tenant_id: str | None) -> UUID:
    """The tenant a control request is about: `?tenant=<id>`, or the caller's only one."""
    memberships = active_memberships(user)
    if tenant_id:
        try:
            tenant_uuid = UUID(str(tenant_id))
        except ValueError:
            raise ValidationFailed("VALIDATION_ERROR", "tenant is a tenant id (a UUID).") from None
        if not memberships.filter(tenant_id=tenant_uuid).exists():
            raise NotFound("NOT_FOUND", "The tenant does not exist.")
        return tenant_uuid
    tenant_ids = list(memberships.values_list("tenant_id", flat=True)[:2])
    if len(tenant_ids) != 1:
        raise ValidationFailed("TENANT_REQUIRED", "You belong to several tenants (or none): pass ?tenant=<id>.")
    return tenant_ids[0]


def kill_switches(tenant_id: UUID) -> dict:
    return {
        "global_engaged": settings.REVPLAN_EXECUTION_DISABLED,
        "switches": list(KillSwitch.objects.filter(tenant_id=tenant_id).order_by("action_type")),
    }


def autopilot_timeline(tenant_id: UUID) -> QuerySet[ActionIntent]:
    """What the system did on its own: plan-step intents no person approved, newest first."""
    return (
        ActionIntent.objects.filter(tenant_id=tenant_id, plan__isnull=False, approved_by__isnull=True)
        .select_related("account")
        .order_by("-created_at", "id")
    )


def action_for_user(user, intent_id) -> ActionIntent:
    """One action of the caller's tenants, with its tries and the ledger entries that mention it."""
    intent = (
        visible_to(ActionIntent.objects.filter(pk=intent_id), user)
        .select_related("account", "approved_by")
        .first()
    )
    if intent is None:
        raise NotFound("NOT_FOUND", "The action does not exist.")
    return intent


def action_why(intent: ActionIntent) -> dict:
    """What it knew, which policy (or person) allowed it, what happened: the answer and the entries behind it."""
    decision = intent.autonomy_decision or {}
    entries = []
    if intent.plan_id:
        entries = list(
            PlanLedgerEntry.objects.filter(plan_id=intent.plan_id, step_id=intent.step_id)
            .filter(data__intent_id=str(intent.id))
            .order_by("chain_seq")
        )
    if intent.approved_by_id:
        allowed_by = f"{intent.approved_by.get_username()} approved it"
    else:
        allowed_by = f"policy {intent.approving_policy} allowed it on its own"
    return {
        "intent_id": intent.id,
        "action_type": intent.action_type,
        "account": {"id": intent.account_id, "name": intent.account.name},
        "plan_id": intent.plan_id,
        "step_id": intent.step_id,
        "attempt": intent.attempt,
        "status": intent.status,
        "allowed_by": allowed_by,
        "approved_by": intent.approved_by_id,
        "approving_policy": intent.approving_policy,
        "decision": {key: decision.get(key, "") for key in ("decision", "reason", "explanation", "policy_version")},
        "knew": decision.get("facts", {}),
        "outcome": {"external_ids": intent.external_ids, "failure_class": intent.failure_class,
                    "failure_reason": intent.failure_reason, "finished_at": intent.finished_at},
        "try_history": list(ExecutionAttempt.objects.filter(intent=intent).order_by("number").values(
            "number", "outcome", "error", "started_at", "finished_at")),
        "entries": entries,
    }


def ledger_export(tenant_id: UUID, *, start: datetime | None, end: datetime | None, fmt: str) -> Iterator[str]:
    """The tenant's ledger, oldest first, as JSON Lines or CSV, read through a server-side cursor.

    Memory stays flat whatever the range: rows arrive EXPORT_CHUNK at a time and leave as text.
    """
    entries = PlanLedgerEntry.objects.filter(tenant_id=tenant_id)
    if start is not None:
        entries = entries.filter(occurred_at__gte=start)
    if end is not None:
        entries = entries.filter(occurred_at__lt=end)
    rows = entries.order_by("occurred_at", "id").values_list(
        "id", "tenant_id", "plan_id", "step_id", "chain_seq", "event_type", "actor", "reason_code", "explanation",
        "data", "occurred_at", "prev_hash", "entry_hash",
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer) if fmt == "csv" else None
    if writer:
        writer.writerow(EXPORT_FIELDS)
    # In a transaction, the server-side cursor is a plain one that PostgreSQL also streams; outside one,
    # Django declares it WITH HOLD, which makes PostgreSQL build the whole result before the first row.
    with transaction.atomic():
        for row in rows.iterator(chunk_size=EXPORT_CHUNK):
            if writer:
                *head, data, occurred_at, prev_hash, entry_hash = row
                writer.writerow([*("" if value is None else value for value in head),
                                 json.dumps(data, sort_keys=True), occurred_at.isoformat(), prev_hash, entry_hash])
            else:
                buffer.write(json.dumps(dict(zip(EXPORT_FIELDS, row, strict=True)), default=str, sort_keys=True)
                             + "\n")
            if buffer.tell() > EXPORT_FLUSH_BYTES:  # a few large writes, not one per entry
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()
