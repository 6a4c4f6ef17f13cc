"""Shadow mode: the policy's verdict beside the person's decision, and how often the two agree.

The engine records a ShadowDecision when a step of an action type in SHADOW mode comes due (`record`);
the step then waits for a person as in APPROVAL_REQUIRED. What the person did is read off the step and
its plan afterwards (`person_decision_of`, a pure function): approved as the policy saw it, approved after
an edit (the approval's content digest is not the one judged), skipped, the plan aborted, or nobody
decided before the plan ended. `resolve` stores it (the daily review runs it); `agreement` counts per
action type, the ones still open resolved on the fly, so a read writes nothing.

Agreement is over the steps the policy would have run on its own: the share a person approved as is.
Those it would have left to a person anyway (external contact, HIGH risk) change nothing by promotion
and are counted apart.
"""
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Q

from orchestrator.autonomy.models import PersonDecision, ShadowDecision
from orchestrator.autonomy.policy import Decision
from plans.lifecycle import TERMINAL
from plans.models import PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.services import approvals

DISAGREED = frozenset({PersonDecision.APPROVED_AFTER_EDIT, PersonDecision.SKIPPED, PersonDecision.ABORTED})
DECIDED = DISAGREED | {PersonDecision.APPROVED}
RESOLVE_CHUNK = 2000


def record(plan: RevenuePlan, step: PlanStep, step_decision, *, now: datetime) -> None:
    """The verdict on the step's next attempt, once (a second advance of the same wait adds nothing).
    `step_decision`: an autonomy.services.StepDecision whose `shadow` is set. In the engine's transaction."""
    verdict = step_decision.shadow
    ShadowDecision.objects.bulk_create([ShadowDecision(
        tenant_id=plan.tenant_id, plan_id=plan.id, step_id=step.step_id, attempt=step.attempts + 1,
        account_id=plan.account_id, action_type=step.action_type,
        would_run=verdict.decision == Decision.AUTO_EXECUTE, reason=verdict.reason,
        explanation=verdict.explanation, policy_version=verdict.policy_version,
        facts=step_decision.facts.as_dict(), content_digest=approvals.digest(approvals.step_content(step)),
        decided_at=now,
    )], ignore_conflicts=True)


@dataclass(frozen=True)
class Resolution:
    decision: str
    by: int | None = None
    at: datetime | None = None


def person_decision_of(row: ShadowDecision, step: PlanStep | None, plan: RevenuePlan, *,
                       now: datetime) -> Resolution | None:
    """What a person did with the step since the policy judged it; None while nobody has (and it can still)."""
    if step is None:  # taken out of the plan by a person's edit
        return Resolution(PersonDecision.SKIPPED, at=now)
    if step.approved_by_id is not None and step.approved_at is not None and step.approved_at >= row.decided_at:
        record = step.approval_record or {}
        as_judged = record.get("digest") == row.content_digest
        return Resolution(PersonDecision.APPROVED if as_judged else PersonDecision.APPROVED_AFTER_EDIT,
                          by=step.approved_by_id, at=step.approved_at)
    if plan.plan_status == PlanStatus.ABORTED:  # first: an abort closes (skips) the steps that waited
        return Resolution(PersonDecision.ABORTED, at=plan.aborted_at or now)
    if step.status == StepStatus.SKIPPED:
        return Resolution(PersonDecision.SKIPPED, at=now)
    if plan.plan_status in TERMINAL:
        return Resolution(PersonDecision.NONE, at=now)
    return None


def _open_rows(tenant_id: UUID, *, since: datetime | None = None):
    rows = ShadowDecision.objects.filter(tenant_id=tenant_id, person_decision=PersonDecision.UNDECIDED)
    return rows.filter(decided_at__gte=since) if since is not None else rows


def _resolved(rows: list[ShadowDecision], *, now: datetime) -> list[tuple[ShadowDecision, Resolution]]:
    """Each row with what the person did, for the rows where someone (or the plan's end) decided."""
    steps = PlanStep.objects.in_bulk({row.step_id for row in rows})
    plans = RevenuePlan.objects.only("id", "plan_status", "aborted_at").in_bulk({row.plan_id for row in rows})
    found = []
    for row in rows:
        resolution = person_decision_of(row, steps.get(row.step_id), plans[row.plan_id], now=now)
        if resolution is not None:
            found.append((row, resolution))
    return found


def resolve(tenant_id: UUID, *, now: datetime) -> int:
    """Store the person's decision on every open row of the tenant that has one; how many were stored."""
    stored, after = 0, 0
    while True:
        rows = list(_open_rows(tenant_id).filter(pk__gt=after).order_by("pk")[:RESOLVE_CHUNK])
        if not rows:
            return stored
        after = rows[-1].pk
        changed = []
        for row, resolution in _resolved(rows, now=now):
            row.person_decision, row.person_decided_by, row.person_decided_at = (
                resolution.decision, resolution.by, resolution.at)
            changed.append(row)
        ShadowDecision.objects.bulk_update(changed, ["person_decision", "person_decided_by", "person_decided_at"])
        stored += len(changed)


def agreement(tenant_id: UUID, *, since: datetime, now: datetime) -> dict[str, dict]:
    """action_type -> counts since `since` (DECIDED person decisions; the open rows resolved on the fly):
    would_run / would_ask, each by person decision, undecided, and the agreement share (None before any)."""
    counts: dict[str, Counter] = {}
    stored = (ShadowDecision.objects.filter(tenant_id=tenant_id, decided_at__gte=since)
              .exclude(person_decision=PersonDecision.UNDECIDED)
              .values_list("action_type", "would_run", "person_decision"))
    for action_type, would_run, decision in stored.iterator(chunk_size=RESOLVE_CHUNK):
        counts.setdefault(action_type, Counter())[(would_run, decision)] += 1
    open_rows = list(_open_rows(tenant_id, since=since))
    resolved = {row.pk: resolution for row, resolution in _resolved(open_rows, now=now)}
    for row in open_rows:
        decision = resolved[row.pk].decision if row.pk in resolved else PersonDecision.UNDECIDED
        counts.setdefault(row.action_type, Counter())[(row.would_run, decision)] += 1
    return {action_type: _summary(counter) for action_type, counter in sorted(counts.items())}


def _summary(counter: Counter) -> dict:
    def side(would_run: bool) -> dict:
        by_decision = {decision.value or "UNDECIDED": counter[(would_run, decision)] for decision in PersonDecision}
        return {"total": sum(by_decision.values()), "decided": sum(counter[(would_run, d)] for d in DECIDED),
                "by_person_decision": by_decision}

    would_run = side(True)
    agreed = counter[(True, PersonDecision.APPROVED)]
    return {"would_run": would_run, "would_ask": side(False), "agreed": agreed,
            "agreement": round(agreed / would_run["decided"], 4) if would_run["decided"] else None}


def last_decided_would_run(tenant_id: UUID, action_type: str, *, since: datetime, limit: int) -> list[str]:
    """The person decisions on the latest `limit` decided steps the policy would have run (newest first)."""
    return list(ShadowDecision.objects.filter(
        Q(person_decision__in=DECIDED), tenant_id=tenant_id, action_type=action_type, would_run=True,
        decided_at__gte=since,
    ).order_by("-decided_at", "-pk").values_list("person_decision", flat=True)[:limit])
