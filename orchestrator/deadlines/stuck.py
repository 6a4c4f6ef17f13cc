"""Stuck plans: an ACTIVE plan that nothing moved for REVPLAN_STUCK_AFTER_SECONDS although its blocked_by
(orchestrator.blocked_by, `waits_on`) says it waits on neither a person nor a clock — for example a runnable
step whose plan lost its next_run_at, so no tick looks at it.

Each such plan is flagged once per episode (a StuckEpisode row per plan, version and newest ledger entry):
a STUCK_DETECTED entry in its chain with what was last seen of it, a metric, and a re-drive (next_run_at
set to now, so the next tick advances it). A plan that moves afterwards (a new ledger entry) ends the
episode; one the re-drive did not move stays flagged, in the admin's "stuck plans" list, and is not
re-driven again: a second push would not fix what the first did not, a person has to look.
"""
import logging
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Prefetch, Q
from django.utils import timezone

from orchestrator.blocked_by import blocked_by_for
from orchestrator.deadlines import metrics
from orchestrator.deadlines.models import StuckEpisode
from plans import ledger, selectors
from plans.locking import lock_plan
from plans.models import EventType, PauseLayer, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.why import WaitsOn

logger = logging.getLogger(__name__)

COMPONENT = "stuck_detector"
ACTOR = ledger.system_actor(COMPONENT)
# What only a person or a clock ends: a plan waiting on either is not stuck, however long it waits.
_NOT_STUCK_WAITS = frozenset({WaitsOn.PERSON.value, WaitsOn.TIME.value})


def _candidates(*, quiet_since: datetime) -> list[RevenuePlan]:
    """ACTIVE plans with no ledger entry (but STUCK_DETECTED) since `quiet_since`, no step waiting for a
    person and no open episode at their version (flagged already: they would fill every batch and hide
    the plans stuck since), oldest first, at most REVPLAN_STUCK_BATCH; their steps and open layers
    prefetched."""
    recent = PlanLedgerEntry.objects.filter(plan_id=OuterRef("pk"), occurred_at__gt=quiet_since).exclude(
        event_type=EventType.STUCK_DETECTED)
    awaiting_person = PlanStep.objects.filter(plan_id=OuterRef("pk"), status=StepStatus.PENDING_APPROVAL)
    flagged = StuckEpisode.objects.filter(plan_id=OuterRef("pk"), plan_version=OuterRef("version"),
                                          resolved_at__isnull=True)
    return list(
        RevenuePlan.objects.filter(plan_status=PlanStatus.ACTIVE, updated_at__lte=quiet_since)
        .exclude(Exists(recent)).exclude(Exists(awaiting_person)).exclude(Exists(flagged))
        .select_related("account")
        .prefetch_related("steps", Prefetch("pause_layers", queryset=PauseLayer.objects.filter(lifted_at__isnull=True)
                                            .order_by("set_at", "id"), to_attr=selectors.OPEN_LAYERS))
        .order_by("updated_at")[: settings.REVPLAN_STUCK_BATCH]
    )


def _last_entries(plan_ids: list[UUID]) -> dict[UUID, tuple[int, str, datetime]]:
    """plan_id -> its newest ledger entry but STUCK_DETECTED: (chain_seq, event_type, occurred_at)."""
    rows = (PlanLedgerEntry.objects.filter(plan_id__in=plan_ids).exclude(event_type=EventType.STUCK_DETECTED)
            .order_by("plan_id", "-chain_seq").distinct("plan_id")
            .values_list("plan_id", "chain_seq", "event_type", "occurred_at"))
    return {plan_id: (seq, event_type, occurred_at) for plan_id, seq, event_type, occurred_at in rows}


def _last_seen(plan: RevenuePlan, last_entry: tuple[int, str, datetime] | None, blocked_by: list[dict]) -> dict:
    seq, event_type, occurred_at = last_entry or (0, "", plan.updated_at)
    return {
        "last_progress_at": max(occurred_at, plan.updated_at).isoformat(),
        "last_entry": {"chain_seq": seq, "event_type": event_type, "occurred_at": occurred_at.isoformat()},
        "plan_version": plan.version,
        "next_run_at": plan.next_run_at.isoformat() if plan.next_run_at else None,
        "steps": [{"step_id": str(step.step_id), "sequence": step.sequence, "action_type": step.action_type,
                   "status": step.status, "attempts": step.attempts,
                   "next_attempt_at": step.next_attempt_at.isoformat() if step.next_attempt_at else None}
                  for step in sorted(plan.steps.all(), key=lambda step: step.sequence)],
        "blocked_by": [{"code": item["code"], "waits_on": item["waits_on"], "step_id": item["step_id"]}
                       for item in blocked_by],
    }


def stuck_plans_detect(*, now: datetime | None = None) -> list[UUID]:
    """Flag and re-drive the plans stuck now (a new episode each); returns their ids. `now` injectable, so a
    test moves the clock instead of sleeping. Episodes whose plan moved since are closed."""
    now = now or timezone.now()
    quiet_since = now - timedelta(seconds=settings.REVPLAN_STUCK_AFTER_SECONDS)
    plans = _candidates(quiet_since=quiet_since)
    blocked = blocked_by_for(plans, now=now) if plans else {}
    stuck = [plan for plan in plans if not any(item["waits_on"] in _NOT_STUCK_WAITS for item in blocked[plan.id])]
    last_entries = _last_entries([plan.id for plan in stuck]) if stuck else {}
    flagged = [plan.id for plan in stuck
               if _flag(plan, _last_seen(plan, last_entries.get(plan.id), blocked[plan.id]),
                        last_seq=(last_entries.get(plan.id) or (0,))[0], now=now)]
    # An open episode is over once its plan moved (a newer ledger entry, another version), left ACTIVE or
    # waits for a person.
    moved_on = PlanLedgerEntry.objects.filter(plan_id=OuterRef("plan_id"), chain_seq__gt=OuterRef("last_seen_seq")
                                              ).exclude(event_type=EventType.STUCK_DETECTED)
    awaiting_person = PlanStep.objects.filter(plan_id=OuterRef("plan_id"), status=StepStatus.PENDING_APPROVAL)
    StuckEpisode.objects.filter(resolved_at__isnull=True).filter(
        ~Q(plan__plan_status=PlanStatus.ACTIVE) | ~Q(plan__version=F("plan_version")) | Q(Exists(moved_on))
        | Q(Exists(awaiting_person))
    ).update(resolved_at=now)
    metrics.STUCK_PLANS.set(StuckEpisode.objects.filter(resolved_at__isnull=True).count())
    metrics.STUCK_DETECTED.inc(len(flagged))
    return flagged


def _flag(plan: RevenuePlan, last_seen: dict, *, last_seq: int, now: datetime) -> bool:
    """A new episode for `plan`: its row, STUCK_DETECTED, the re-drive; False when the episode is known (it
    was flagged and re-driven before, and nothing moved since) or the plan is no longer ACTIVE."""
    with transaction.atomic():
        locked = lock_plan(plan.id)
        if locked.plan_status != PlanStatus.ACTIVE or locked.version != plan.version:
            return False  # it moved between the read and the lock: not stuck
        episode, created = StuckEpisode.objects.get_or_create(
            plan_id=plan.id, plan_version=plan.version, last_seen_seq=last_seq,
            defaults={"tenant_id": plan.tenant_id, "detected_at": now, "redriven_at": now, "last_seen": last_seen,
                      "last_progress_at": datetime.fromisoformat(last_seen["last_progress_at"])})
        if not created:
            if episode.resolved_at is not None:  # closed while it sat outside a run's batch: still the same
                StuckEpisode.objects.filter(pk=episode.pk).update(resolved_at=None)
            return False
        ledger.stuck_detected(locked, actor=ACTOR, last_seen=last_seen, redriven=True)
        # The re-drive: due now, so the next tick claims it and advance_plan looks at it afresh (the tick's
        # own claim query, orchestrator.claims, is what runs it: nothing here runs a step).
        RevenuePlan.objects.filter(pk=plan.id).update(next_run_at=now)
    logger.warning("stuck plan re-driven", extra={"plan_id": str(plan.id), "last_progress_at":
                                                  last_seen["last_progress_at"], "plan_version": plan.version})
    return True
