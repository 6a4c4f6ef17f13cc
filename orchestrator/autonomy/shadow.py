"""Shadow mode: the policy's verdict beside the person's decision, and how often the two agree.

The engine records a ShadowDecision when a step of an action type in SHADOW mode comes due (`record`): one
per (step, attempt, content), so a step judged again after an edit gets a row for what it is now. The step
then waits for a person as in APPROVAL_REQUIRED. What the person then did is read from the plan's ledger
after the verdict (`person_decision_from`, a pure function of the entries): the step approved by a person
as the policy saw it (the STEP_APPROVED entry's snapshot has the content the verdict judged) or after an
edit, skipped by a person, the plan aborted by a person, or the plan ended (expired, completed, aborted by
the system) with nobody deciding: NONE, no evidence either way. Read from the history, not from the step
as it is now, the answer does not depend on when it is asked. `resolve` stores it (the daily review runs
it); `agreement` counts per action type, the open rows resolved on the fly, so a read writes nothing.

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
from plans.models import EventType, PlanLedgerEntry, PlanStep, RevenuePlan
from plans.services import approvals

DISAGREED = frozenset({PersonDecision.APPROVED_AFTER_EDIT, PersonDecision.SKIPPED, PersonDecision.ABORTED})
DECIDED = DISAGREED | {PersonDecision.APPROVED}
RESOLVE_CHUNK = 2000


def record(plan: RevenuePlan, step: PlanStep, step_decision, *, awaiting: PlanLedgerEntry) -> None:
    """The verdict on the step's next attempt as it is now, once (a second advance of the same wait adds nothing).
    `step_decision`: an autonomy.services.StepDecision whose `shadow` is set; `awaiting`: the wait's
    STEP_AWAITING_APPROVAL entry, just appended. In the engine's transaction."""
    verdict = step_decision.shadow
    ShadowDecision.objects.bulk_create([ShadowDecision(
        tenant_id=plan.tenant_id, plan_id=plan.id, step_id=step.step_id, attempt=step.attempts + 1,
        account_id=plan.account_id, action_type=step.action_type,
        would_run=verdict.decision == Decision.AUTO_EXECUTE, reason=verdict.reason,
        explanation=verdict.explanation, policy_version=verdict.policy_version,
        facts=step_decision.facts.as_dict(), content_digest=approvals.digest(approvals.step_content(step)),
        decided_at=awaiting.occurred_at, awaiting_seq=awaiting.chain_seq,
    )], ignore_conflicts=True)


@dataclass(frozen=True)
class Resolution:
    decision: str
    by: int | None = None
    at: datetime | None = None


# What ends a wait, in the plan's chain: a person's verb on the step or the plan, or the plan's end.
DECIDING_EVENTS = (EventType.STEP_APPROVED, EventType.STEP_SKIPPED, EventType.STEP_CLOSED, EventType.PLAN_ABORTED,
                   EventType.PLAN_EXPIRED, EventType.PLAN_COMPLETED)
_PERSON = "user:"


def _person_id(actor: str) -> int | None:
    return int(actor[len(_PERSON):]) if actor.startswith(_PERSON) and actor[len(_PERSON):].isdigit() else None


def _approved_digest(entry: PlanLedgerEntry, step_id: UUID) -> str | None:
    """The digest of the step's content as the STEP_APPROVED entry's plan snapshot has it (what was approved)."""
    for step in (entry.data or {}).get("plan", {}).get("steps", []):
        if step.get("step_id") == str(step_id):
            return approvals.digest({"action_type": step.get("action_type"), "parameters": step.get("parameters"),
                                     "depends_on": sorted(str(d) for d in step.get("depends_on") or []),
                                     "risk_level": step.get("risk_level")})
    return None


def person_decision_from(row: ShadowDecision, entries: list[PlanLedgerEntry]) -> Resolution | None:
    """What ended the wait the row judged, from the plan's DECIDING_EVENTS entries in chain order (those after
    the wait's STEP_AWAITING_APPROVAL entry); None while nothing has."""
    for entry in entries:
        if entry.chain_seq <= row.awaiting_seq:
            continue
        person = _person_id(entry.actor)
        if entry.event_type in (EventType.STEP_APPROVED, EventType.STEP_SKIPPED, EventType.STEP_CLOSED) \
                and entry.step_id != row.step_id:
            continue
        if entry.event_type == EventType.STEP_APPROVED and person is not None:
            as_judged = _approved_digest(entry, row.step_id) == row.content_digest
            return Resolution(PersonDecision.APPROVED if as_judged else PersonDecision.APPROVED_AFTER_EDIT,
                              by=person, at=entry.occurred_at)
        if entry.event_type == EventType.STEP_SKIPPED and person is not None:
            return Resolution(PersonDecision.SKIPPED, by=person, at=entry.occurred_at)
        if entry.event_type == EventType.PLAN_ABORTED and person is not None:
            return Resolution(PersonDecision.ABORTED, by=person, at=entry.occurred_at)
        if entry.event_type != EventType.STEP_APPROVED:
            # the plan ended, or a rule skipped the step (a deadline's): nobody decided
            return Resolution(PersonDecision.NONE, at=entry.occurred_at)
    return None


def _open_rows(tenant_id: UUID, *, since: datetime | None = None):
    rows = ShadowDecision.objects.filter(tenant_id=tenant_id, person_decision=PersonDecision.UNDECIDED)
    return rows.filter(decided_at__gte=since) if since is not None else rows


def _resolved(rows: list[ShadowDecision]) -> list[tuple[ShadowDecision, Resolution]]:
    """Each row with what ended its wait, for the rows whose wait has ended (one read of the plans' entries)."""
    if not rows:
        return []
    entries: dict[UUID, list[PlanLedgerEntry]] = {}
    for entry in PlanLedgerEntry.objects.filter(
            plan_id__in={row.plan_id for row in rows}, event_type__in=DECIDING_EVENTS,
            chain_seq__gt=min(row.awaiting_seq for row in rows)).order_by("plan_id", "chain_seq"):
        entries.setdefault(entry.plan_id, []).append(entry)
    found = []
    for row in rows:
        resolution = person_decision_from(row, entries.get(row.plan_id, []))
        if resolution is not None:
            found.append((row, resolution))
    return found


def resolve(tenant_id: UUID) -> int:
    """Store the person's decision on every open row of the tenant whose wait has ended; how many were stored."""
    stored, after = 0, 0
    while True:
        rows = list(_open_rows(tenant_id).filter(pk__gt=after).order_by("pk")[:RESOLVE_CHUNK])
        if not rows:
            return stored
        after = rows[-1].pk
        changed = []
        for row, resolution in _resolved(rows):
            row.person_decision, row.person_decided_by, row.person_decided_at = (
                resolution.decision, resolution.by, resolution.at)
            changed.append(row)
        ShadowDecision.objects.bulk_update(changed, ["person_decision", "person_decided_by", "person_decided_at"])
        stored += len(changed)


def agreement(tenant_id: UUID, *, since: datetime) -> dict[str, dict]:
    """action_type -> counts since `since` (DECIDED person decisions; the open rows resolved on the fly):
    would_run / would_ask, each by person decision, undecided, and the agreement share (None before any)."""
    counts: dict[str, Counter] = {}
    stored = (ShadowDecision.objects.filter(tenant_id=tenant_id, decided_at__gte=since)
              .exclude(person_decision=PersonDecision.UNDECIDED)
              .values_list("action_type", "would_run", "person_decision"))
    for action_type, would_run, decision in stored.iterator(chunk_size=RESOLVE_CHUNK):
        counts.setdefault(action_type, Counter())[(would_run, decision)] += 1
    open_rows = list(_open_rows(tenant_id, since=since))
    resolved = {row.pk: resolution for row, resolution in _resolved(open_rows)}
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
