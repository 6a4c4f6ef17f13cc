"""Which plans need attention (DESIGN §4): the tick's claim queries, each an index range, so a tick's
cost does not grow with the plans that need nothing."""
import math
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.utils import timezone

from orchestrator.execution.models import ActionIntent, IntentStatus

# Claim due plans by pushing next_run_at past the re-enqueue guard in the same statement: a second
# beat (or the next tick) skips them until the guard passes, and rows an advance holds are skipped.
_CLAIM_DUE = """
UPDATE plans_revenueplan SET next_run_at = %(guard)s
WHERE id IN (
    SELECT id FROM plans_revenueplan
    WHERE plan_status IN ('APPROVED', 'ACTIVE') AND next_run_at <= %(now)s
    ORDER BY next_run_at LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
) RETURNING id
"""
_CLAIM_EXPIRED = """
UPDATE plans_revenueplan SET next_run_at = %(guard)s
WHERE id IN (
    SELECT id FROM plans_revenueplan
    WHERE plan_status IN ('DRAFT', 'APPROVED', 'ACTIVE', 'PAUSED') AND expires_at <= %(now)s
      AND (next_run_at IS NULL OR next_run_at <= %(now)s)
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
) RETURNING id
"""


# PAUSED plans held by a switch that is no longer on: the global one once REVPLAN_EXECUTION_DISABLED is
# off, or a tenant / action-type switch whose row is not engaged (the safety net for a pause that
# committed just after that switch's release had lifted its layers). Their advance lifts those layers
# (DESIGN §3.2). The partial index on open layers keeps this to the plans a switch holds.
_CLAIM_SWITCH_RELEASED = """
UPDATE plans_revenueplan SET next_run_at = %(guard)s
WHERE id IN (
    SELECT paused.id FROM plans_revenueplan paused
    JOIN plans_pauselayer layer ON layer.plan_id = paused.id
    WHERE layer.kind IN ('GLOBAL_KILL_SWITCH', 'KILL_SWITCH') AND layer.lifted_at IS NULL
      AND paused.plan_status = 'PAUSED' AND (paused.next_run_at IS NULL OR paused.next_run_at <= %(now)s)
      AND CASE WHEN layer.kind = 'GLOBAL_KILL_SWITCH' THEN NOT %(global_on)s
               ELSE NOT EXISTS (SELECT 1 FROM plans_killswitch switch WHERE switch.tenant_id = paused.tenant_id
                                AND switch.action_type = layer.scope AND switch.engaged) END
    LIMIT %(batch)s
    FOR UPDATE OF paused SKIP LOCKED
) RETURNING id
"""


def due_plan_ids(*, now: datetime | None = None) -> list[UUID]:
    """The plans that need attention, in four index-range queries whatever the number of idle plans."""
    now = now or timezone.now()
    params = {
        "now": now,
        "guard": now + timedelta(seconds=settings.ORCHESTRATOR_REENQUEUE_GUARD_SECONDS),
        "batch": settings.ORCHESTRATOR_TICK_BATCH,
        "global_on": bool(settings.REVPLAN_EXECUTION_DISABLED),
    }
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_DUE, params)
        plan_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(_CLAIM_EXPIRED, params)
        plan_ids += [row[0] for row in cursor.fetchall()]
        cursor.execute(_CLAIM_SWITCH_RELEASED, params)
        plan_ids += [row[0] for row in cursor.fetchall()]
    # Executions whose worker died: their lease ran out without an outcome.
    plan_ids += list(
        ActionIntent.objects.filter(status=IntentStatus.EXECUTING, lease_expires_at__lt=now, plan__isnull=False)
        .values_list("plan_id", flat=True)
        .distinct()[: settings.ORCHESTRATOR_TICK_BATCH]
    )
    return list(dict.fromkeys(plan_ids))


def advance_batches(plan_ids: list[UUID]) -> list[list[UUID]]:
    """The tick's due plans as the advance messages it sends: up to ORCHESTRATOR_ADVANCE_BATCH plans each (one
    transaction and one commit for their advances, one message), but never fewer messages than
    ORCHESTRATOR_ADVANCE_SPREAD while there are that many plans, so a handful of due plans still spreads over
    the workers instead of queueing in one task. Sizes differ by at most one."""
    if not plan_ids:
        return []
    messages = max(math.ceil(len(plan_ids) / max(1, settings.ORCHESTRATOR_ADVANCE_BATCH)),
                   min(len(plan_ids), settings.ORCHESTRATOR_ADVANCE_SPREAD))
    size, larger = divmod(len(plan_ids), messages)
    batches, start = [], 0
    for index in range(messages):
        end = start + size + (1 if index < larger else 0)
        batches.append(plan_ids[start:end])
        start = end
    return batches
