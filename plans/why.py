"""Why a plan exists, why it stopped and what it waits for: plain sentences with the ledger
entries behind them, for the API's /why/ and the approvers' console."""
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from django.db.models import Q

from plans import ledger
from plans.models import EventType, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus


@dataclass(frozen=True)
class WhyAnswer:
    code: str
    sentence: str
    entries: list[PlanLedgerEntry] = field(default_factory=list)
    step_id: UUID | None = None


@dataclass(frozen=True)
class PlanWhy:
    plan: RevenuePlan
    exists: WhyAnswer
    stopped: WhyAnswer | None
    waiting: list[WhyAnswer]


# The newest of each of these per (event type, step) answers "why is it waiting?".
_WAITING_EVENTS = (
    EventType.POLICY_REJECTED,
    EventType.ACTIVATION_BLOCKED,
    EventType.STEP_AWAITING_APPROVAL,
    EventType.STEP_RETRY_SCHEDULED,
)


def _step_label(step: PlanStep) -> str:
    return f"Step {step.sequence + 1} ({step.action_type})"


def _at(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "an unknown time"


def plan_why(plan: RevenuePlan, *, now: datetime) -> PlanWhy:
    """Why one plan exists, why it stopped and what it waits for (`plan` with its steps prefetched)."""
    return plans_why([plan], now=now)[plan.id]


def plans_why(plans: list[RevenuePlan], *, now: datetime) -> dict[UUID, PlanWhy]:
    """plan_why for many plans in three queries whatever their number (steps prefetched).

    A refusal (gate said no to approve or resume, activation blocked) counts only when it is newer
    than the plan's last change: an edit or approval since then makes it history, still in the
    ledger but no longer the answer.
    """
    plan_ids = [plan.id for plan in plans]
    created = {
        entry.plan_id: entry
        for entry in PlanLedgerEntry.objects.filter(plan_id__in=plan_ids, event_type=EventType.PLAN_CREATED)
    }
    stop_wanted = Q()
    for status, event_type in ledger.STOP_EVENTS.items():
        stopped_ids = [plan.id for plan in plans if plan.plan_status == status]
        if stopped_ids:
            stop_wanted |= Q(plan_id__in=stopped_ids, event_type=event_type)
    stops = {
        entry.plan_id: entry
        for entry in PlanLedgerEntry.objects.filter(stop_wanted).order_by("plan_id", "-chain_seq").distinct("plan_id")
    } if stop_wanted else {}
    latest: dict[UUID, dict] = {plan_id: {} for plan_id in plan_ids}
    for entry in (PlanLedgerEntry.objects.filter(plan_id__in=plan_ids, event_type__in=_WAITING_EVENTS)
                  .order_by("plan_id", "event_type", "step_id", "-chain_seq")
                  .distinct("plan_id", "event_type", "step_id")):
        latest[entry.plan_id][(entry.event_type, entry.step_id)] = entry
    answers = {}
    for plan in plans:
        steps = sorted(plan.steps.all(), key=lambda step: step.sequence)
        answers[plan.id] = PlanWhy(
            plan=plan,
            exists=_why_exists(plan, created.get(plan.id)),
            stopped=_why_stopped(plan, stops.get(plan.id)),
            waiting=_why_waiting(plan, steps, latest[plan.id], now=now),
        )
    return answers


def _why_exists(plan: RevenuePlan, created: PlanLedgerEntry | None) -> WhyAnswer:
    if created is None:
        return WhyAnswer("UNKNOWN", f"The plan was created by {plan.created_by} on {_at(plan.created_at)}; "
                                    "the ledger holds no creation entry for it.")
    inputs = created.data.get("inputs") or {}
    looked_at = "; ".join(f"{key}: {value}" for key, value in sorted(inputs.items()))
    sentence = (
        f"{created.actor} proposed this {plan.plan_type} plan on {_at(created.occurred_at)} "
        f"({created.data.get('trigger') or created.reason_code or 'manual'}) to reach the objective "
        f"\"{plan.objective}\"."
    )
    if looked_at:
        sentence += f" The proposal looked at {looked_at}."
    return WhyAnswer(created.reason_code or "PLAN_CREATED", sentence, [created])


def _why_stopped(plan: RevenuePlan, stop_entry: PlanLedgerEntry | None) -> WhyAnswer | None:
    if plan.plan_status not in ledger.STOP_EVENTS:
        return None
    code = (stop_entry.reason_code if stop_entry else "") or plan.stop_reason_code or plan.plan_status
    detail = (stop_entry.explanation if stop_entry else "") or plan.stop_reason_detail or "no reason was recorded"
    by = f" by {stop_entry.actor}" if stop_entry else ""
    when = stop_entry.occurred_at if stop_entry else plan.updated_at
    sentence = f"The plan is {plan.plan_status}: it was stopped{by} on {_at(when)} because {detail.rstrip('.')}."
    if plan.plan_status == PlanStatus.PAUSED:
        sentence += " It waits for its owner, a plan approver or a tenant admin to resume, revise or abort it."
    return WhyAnswer(code, sentence, [stop_entry] if stop_entry else [])


def _why_waiting(plan, steps, latest, *, now: datetime) -> list[WhyAnswer]:
    def since_last_change(event_type) -> PlanLedgerEntry | None:
        entry = latest.get((event_type, None))
        return entry if entry and entry.occurred_at >= plan.updated_at else None

    answers = []
    status = plan.plan_status
    if status == PlanStatus.DRAFT:
        answers.append(WhyAnswer("AWAITING_PLAN_APPROVAL", "The plan is a DRAFT: it waits for a plan approver "
                                 "(a tenant admin when its risk is HIGH) other than its creator to approve it."))
    elif status == PlanStatus.APPROVED:
        blocked = since_last_change(EventType.ACTIVATION_BLOCKED)
        if blocked:
            answers.append(WhyAnswer(blocked.reason_code, f"The plan is approved but the policy gate has not let it "
                                     f"start: {blocked.explanation.split(': ', 1)[-1]}", [blocked]))
        else:
            answers.append(WhyAnswer("AWAITING_ACTIVATION", "The plan is approved and waits for the orchestrator "
                                     f"to activate it (next look at {_at(plan.next_run_at or now)})."))
    refused = since_last_change(EventType.POLICY_REJECTED) if status in (PlanStatus.DRAFT, PlanStatus.PAUSED) else None
    if refused:
        answers.append(WhyAnswer(refused.reason_code, f"The last attempt to {refused.data.get('attempted', 'move')} "
                                 f"it was refused by the policy gate: "
                                 f"{' '.join(r['detail'] for r in refused.data.get('reasons', []))}", [refused]))
    if status != PlanStatus.ACTIVE:
        return answers
    for step in steps:
        if step.status == StepStatus.PENDING_APPROVAL:
            entry = latest.get((EventType.STEP_AWAITING_APPROVAL, step.step_id))
            reason = entry.data.get("autonomy_decision", {}).get("explanation", "") if entry else ""
            answers.append(WhyAnswer(
                (entry.reason_code if entry else "") or "AWAITING_STEP_APPROVAL",
                f"{_step_label(step)} waits for a person's approval"
                + (f": {reason.rstrip('.')}." if reason else ".")
                + " Its owner, a plan approver or a tenant admin can approve it.",
                [entry] if entry else [], step.step_id,
            ))
        elif step.status == StepStatus.PENDING and step.next_attempt_at and step.next_attempt_at > now:
            entry = latest.get((EventType.STEP_RETRY_SCHEDULED, step.step_id))
            error = f" ({step.last_error})" if step.last_error else ""
            answers.append(WhyAnswer(
                "STEP_RETRY_SCHEDULED",
                f"{_step_label(step)} failed on attempt {step.attempts}{error}; attempt {step.attempts + 1} "
                f"is scheduled for {_at(step.next_attempt_at)}.",
                [entry] if entry else [], step.step_id,
            ))
        elif step.status == StepStatus.PENDING and step.attempts and step.next_attempt_at is None:
            # Starting an attempt clears next_attempt_at and a failed one sets it again, so a PENDING
            # step with attempts and no next_attempt_at has an attempt whose outcome is not recorded yet.
            answers.append(WhyAnswer("STEP_RUNNING", f"{_step_label(step)} is running (attempt {step.attempts}); "
                                     "its outcome is not recorded yet.", [], step.step_id))
    if not answers:
        answers.append(WhyAnswer("RUNNING", "The plan is ACTIVE and nothing is holding it: the orchestrator "
                                 f"looks at it again at {_at(plan.next_run_at or now)}."))
    return answers
