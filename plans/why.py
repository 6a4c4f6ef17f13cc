"""Why a plan exists, why it stopped and what it waits for: plain sentences with the ledger
entries behind them, for the API's /why/ and the approvers' console; and, for each thing that keeps
the plan from moving, a structured Wait (what it waits on, who can act, the verb) that the API's
blocked_by serves, so both say the same from one source."""
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from functools import cache
from uuid import UUID

from django.db.models import Q

from plans import ledger, selectors
from plans.authority import Subject, Verb, denial
from plans.models import (
    EventType,
    PauseKind,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    RiskLevel,
    Role,
    StepStatus,
)
from plans.services.layers import LIFTED_BY, LIFTED_BY_VERB, holding_reasons
from plans.wording import inputs_in_words, words


class WaitsOn(StrEnum):
    PERSON = "PERSON"  # only a person's act ends the wait
    TIME = "TIME"  # a clock ends it (a scheduled retry)
    SYSTEM = "SYSTEM"  # the system's own work ends it (an attempt running, the orchestrator's next look)


# who_can_act beyond the tenant roles: the plan's owner whatever their role, and whoever runs the deployment.
PLAN_OWNER = "PLAN_OWNER"
OPERATOR = "OPERATOR"


@cache  # pure over the verb: asked for every wait of every plan on a page
def who_may(verb: Verb) -> tuple[str, ...]:
    """The roles plans.authority lets use `verb` on a plan (PLAN_OWNER first when its owner may)."""
    stranger, owner = Subject(plan_owner_id=0, account_owner_id=0), Subject(plan_owner_id=-1, account_owner_id=-1)
    roles = tuple(role.value for role in Role if denial(verb, role=role, user_id=-1, subject=stranger) is None)
    owner_may = any(denial(verb, role=role, user_id=-1, subject=owner) is None
                    for role in Role if role.value not in roles)
    return ((PLAN_OWNER,) if owner_may else ()) + roles


def approvers_of(plan: RevenuePlan) -> tuple[str, ...]:
    """Who may approve (or reapprove) the plan: a HIGH-risk one needs a tenant admin (the policy gate)."""
    return (Role.TENANT_ADMIN.value,) if plan.risk_level == RiskLevel.HIGH else who_may(Verb.APPROVE)


@dataclass(frozen=True)
class Wait:
    """One thing that keeps a plan from moving, as the API's blocked_by serves it.

    `code`: a pause layer's kind, or one of AWAITING_PLAN_APPROVAL, GATE_REFUSED, AWAITING_ACTIVATION,
    ACTIVATION_BLOCKED, AWAITING_STEP_APPROVAL, STEP_RETRY_SCHEDULED, STEP_RUNNING, STEP_FAILED, PAUSED
    (a PAUSED plan no layer holds: data from before the layers). `verb`: the API verb that ends it.
    """

    code: str
    waits_on: WaitsOn
    who_can_act: tuple[str, ...] = ()
    verb: str | None = None
    since: datetime | None = None
    layer: dict | None = None  # the pause layer that holds the plan: {kind, scope, reason_code, set_by}


@dataclass(frozen=True)
class WhyAnswer:
    code: str
    sentence: str
    entries: list[PlanLedgerEntry] = field(default_factory=list)
    step_id: UUID | None = None
    wait: Wait | None = None  # set when the answer is something that keeps the plan from moving


@dataclass(frozen=True)
class PlanWhy:
    plan: RevenuePlan
    exists: WhyAnswer | None  # None when not asked for (plans_why(..., exists=False))
    stopped: WhyAnswer | None
    waiting: list[WhyAnswer]
    held: list[WhyAnswer] = field(default_factory=list)  # one per open pause layer, oldest first

    @property
    def blocking(self) -> list[WhyAnswer]:
        """Everything that keeps the plan from moving now, each with its Wait: the layers holding it,
        then what it and its steps wait for. Empty only when it can move, or has finished."""
        answers = [*self.held, *(answer for answer in self.waiting if answer.wait)]
        if not answers and self.plan.plan_status == PlanStatus.PAUSED:
            # No layer holds it (a plan paused before the layers): its stop reason does, until a resume.
            stopped = self.stopped or WhyAnswer("PAUSED", "The plan is PAUSED.")
            answers = [replace(stopped, wait=Wait("PAUSED", WaitsOn.PERSON, who_may(Verb.RESUME), "resume",
                                                  since=self.plan.paused_at))]
        return answers


# What each pause layer waits on, who can lift it and with which verb (plans.services.layers.LIFTED_BY
# says the same in words).
# What each layer waits on and who may act on it; the verb that lifts it is layers.LIFTED_BY_VERB.
_LAYER_WAITS: dict[str, tuple[WaitsOn, tuple[str, ...] | None]] = {
    PauseKind.PERSON: (WaitsOn.PERSON, who_may(Verb.RESUME)),
    PauseKind.POLICY: (WaitsOn.PERSON, who_may(Verb.RESUME)),
    PauseKind.KILL_SWITCH: (WaitsOn.PERSON, who_may(Verb.ADMINISTER)),
    PauseKind.GLOBAL_KILL_SWITCH: (WaitsOn.PERSON, (OPERATOR,)),
    PauseKind.RETRY_LIMIT: (WaitsOn.PERSON, who_may(Verb.RETRY_STEP)),
    PauseKind.APPROVAL_STALE: (WaitsOn.PERSON, None),  # None: approvers_of(plan)
    PauseKind.OWNER_INACTIVE: (WaitsOn.PERSON, who_may(Verb.TRANSFER_ACCOUNT)),
    PauseKind.BREAKER: (WaitsOn.SYSTEM, ()),
}


def layer_answer(plan: RevenuePlan, layer: PauseLayer) -> WhyAnswer:
    """One open pause layer as an answer: what holds the plan and who or what lifts it."""
    waits_on, who = _LAYER_WAITS[layer.kind]
    verb = LIFTED_BY_VERB[layer.kind]
    step_id = UUID(layer.scope) if layer.kind == PauseKind.RETRY_LIMIT and layer.scope else None
    return WhyAnswer(
        layer.kind, holding_reasons([layer])[0].detail, step_id=step_id,
        wait=Wait(layer.kind, waits_on, approvers_of(plan) if who is None else who, verb, since=layer.set_at,
                  layer={"kind": layer.kind, "scope": layer.scope, "reason_code": layer.reason_code,
                         "set_by": layer.set_by}),
    )


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


def plans_why(plans: list[RevenuePlan], *, now: datetime, exists: bool = True) -> dict[UUID, PlanWhy]:
    """plan_why for many plans in four queries whatever their number (steps prefetched).

    A refusal (gate said no to approve or resume, activation blocked) counts only when it is newer
    than the plan's last change: an edit or approval since then makes it history, still in the
    ledger but no longer the answer. `exists=False`: without why each plan exists (its creation entry,
    a query and a row a plan), for a caller that wants only what holds the plans (blocked_by).
    """
    plan_ids = [plan.id for plan in plans]
    created = {
        entry.plan_id: entry
        for entry in PlanLedgerEntry.objects.filter(plan_id__in=plan_ids, event_type=EventType.PLAN_CREATED)
    } if exists else {}
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
    held: dict[UUID, list[PauseLayer]] = {plan_id: [] for plan_id in plan_ids}
    if all(hasattr(plan, selectors.OPEN_LAYERS) for plan in plans):  # prefetched with the plans: no query
        held = {plan.id: list(getattr(plan, selectors.OPEN_LAYERS)) for plan in plans}
    else:
        for layer in PauseLayer.objects.filter(plan_id__in=plan_ids, lifted_at__isnull=True).order_by("set_at", "id"):
            held[layer.plan_id].append(layer)
    answers = {}
    for plan in plans:
        steps = sorted(plan.steps.all(), key=lambda step: step.sequence)
        answers[plan.id] = PlanWhy(
            plan=plan,
            exists=_why_exists(plan, created.get(plan.id)) if exists else None,
            stopped=_why_stopped(plan, stops.get(plan.id), held[plan.id]),
            waiting=_why_waiting(plan, steps, latest[plan.id], now=now, held=bool(held[plan.id])),
            held=[layer_answer(plan, layer) for layer in held[plan.id]],
        )
    return answers


def _why_exists(plan: RevenuePlan, created: PlanLedgerEntry | None) -> WhyAnswer:
    if created is None:
        return WhyAnswer("UNKNOWN", f"The plan was created by {plan.created_by} on {_at(plan.created_at)}; "
                                    "the ledger holds no creation entry for it.")
    inputs = created.data.get("inputs") or {}
    looked_at = inputs_in_words(inputs) if isinstance(inputs, dict) else words(inputs)
    sentence = (
        f"{created.actor} proposed this {plan.plan_type} plan on {_at(created.occurred_at)} "
        f"({created.data.get('trigger') or created.reason_code or 'manual'}) to reach the objective "
        f"\"{plan.objective}\"."
    )
    if looked_at:
        sentence += f" What the proposal looked at: {looked_at}"
    return WhyAnswer(created.reason_code or "PLAN_CREATED", sentence, [created])


def _why_stopped(plan: RevenuePlan, stop_entry: PlanLedgerEntry | None,
                 layers: list[PauseLayer]) -> WhyAnswer | None:
    if plan.plan_status not in ledger.STOP_EVENTS:
        return None
    code = (stop_entry.reason_code if stop_entry else "") or plan.stop_reason_code or plan.plan_status
    detail = (stop_entry.explanation if stop_entry else "") or plan.stop_reason_detail or "no reason was recorded"
    by = f" by {stop_entry.actor}" if stop_entry else ""
    when = stop_entry.occurred_at if stop_entry else plan.updated_at
    sentence = f"The plan is {plan.plan_status}: it was stopped{by} on {_at(when)} because {detail.rstrip('.')}."
    if plan.plan_status == PlanStatus.PAUSED and layers:
        held = "; ".join(
            f"{layer.kind}{f' ({layer.scope})' if layer.scope else ''}, set by {layer.set_by} on {_at(layer.set_at)}: "
            f"{layer.explanation.rstrip('.')}; lifted by {LIFTED_BY[layer.kind]}"
            for layer in layers
        )
        sentence += f" It is held by {held}. It runs again when no layer is left."
    elif plan.plan_status == PlanStatus.PAUSED:
        sentence += " It waits for its owner, a plan approver or a tenant admin to resume, revise or abort it."
    return WhyAnswer(code, sentence, [stop_entry] if stop_entry else [])


def _why_waiting(plan, steps, latest, *, now: datetime, held: bool = False) -> list[WhyAnswer]:
    """`held`: an open pause layer holds the plan (then nothing here may say that nothing does)."""
    def since_last_change(event_type) -> PlanLedgerEntry | None:
        entry = latest.get((event_type, None))
        return entry if entry and entry.occurred_at >= plan.updated_at else None

    answers = []
    status = plan.plan_status
    if status == PlanStatus.DRAFT:
        answers.append(WhyAnswer("AWAITING_PLAN_APPROVAL", "The plan is a DRAFT: it waits for a plan approver "
                                 "(a tenant admin when its risk is HIGH) other than its creator to approve it.",
                                 wait=Wait("AWAITING_PLAN_APPROVAL", WaitsOn.PERSON, approvers_of(plan), "approve",
                                           since=plan.updated_at)))
    elif status == PlanStatus.APPROVED:
        blocked = since_last_change(EventType.ACTIVATION_BLOCKED)
        if blocked:
            answers.append(WhyAnswer(blocked.reason_code, f"The plan is approved but the policy gate has not let it "
                                     f"start: {blocked.explanation.split(': ', 1)[-1]}", [blocked],
                                     wait=Wait("ACTIVATION_BLOCKED", WaitsOn.PERSON, who_may(Verb.REVISE), "revise",
                                               since=blocked.occurred_at)))
        else:
            answers.append(WhyAnswer("AWAITING_ACTIVATION", "The plan is approved and waits for the orchestrator "
                                     f"to activate it (next look at {_at(plan.next_run_at or now)}).",
                                     wait=Wait("AWAITING_ACTIVATION", WaitsOn.SYSTEM, since=plan.approved_at)))
    refused = since_last_change(EventType.POLICY_REJECTED) if status in (PlanStatus.DRAFT, PlanStatus.PAUSED) else None
    if refused:
        draft = status == PlanStatus.DRAFT
        answers.append(WhyAnswer(refused.reason_code, f"The last attempt to {refused.data.get('attempted', 'move')} "
                                 f"it was refused by the policy gate: "
                                 f"{' '.join(r['detail'] for r in refused.data.get('reasons', []))}", [refused],
                                 wait=Wait("GATE_REFUSED", WaitsOn.PERSON, who_may(Verb.EDIT if draft else Verb.REVISE),
                                           "edit" if draft else "revise", since=refused.occurred_at)))
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
                wait=Wait("AWAITING_STEP_APPROVAL", WaitsOn.PERSON, who_may(Verb.APPROVE_STEP), "approve_step",
                          since=entry.occurred_at if entry else None),
            ))
        elif step.status == StepStatus.PENDING and step.next_attempt_at and step.next_attempt_at > now:
            entry = latest.get((EventType.STEP_RETRY_SCHEDULED, step.step_id))
            error = f" ({step.last_error})" if step.last_error else ""
            answers.append(WhyAnswer(
                "STEP_RETRY_SCHEDULED",
                f"{_step_label(step)} failed on attempt {step.attempts}{error}; attempt {step.attempts + 1} "
                f"is scheduled for {_at(step.next_attempt_at)}.",
                [entry] if entry else [], step.step_id,
                wait=Wait("STEP_RETRY_SCHEDULED", WaitsOn.TIME, since=entry.occurred_at if entry else None),
            ))
        elif step.attempt_out:
            answers.append(WhyAnswer("STEP_RUNNING", f"{_step_label(step)} is running (attempt {step.attempts}); "
                                     "its outcome is not recorded yet.", [], step.step_id,
                                     wait=Wait("STEP_RUNNING", WaitsOn.SYSTEM)))
        elif step.status == StepStatus.FAILED:
            # Nothing runs a FAILED step again on its own and the plan cannot complete past it; the
            # orchestrator's next look pauses the plan with a RETRY_LIMIT layer (the stall rule).
            error = f" ({step.last_error})" if step.last_error else ""
            answers.append(WhyAnswer(
                "STEP_FAILED",
                f"{_step_label(step)} FAILED after {step.attempts} attempt(s){error}; the plan cannot go on until "
                "its owner, a plan approver or a tenant admin retries it, skips it (if optional), revises or "
                "aborts the plan.",
                [], step.step_id,
                wait=Wait("STEP_FAILED", WaitsOn.PERSON, who_may(Verb.RETRY_STEP), "retry_step"),
            ))
    if not answers and not held:
        answers.append(WhyAnswer("RUNNING", "The plan is ACTIVE and nothing is holding it: the orchestrator "
                                 f"looks at it again at {_at(plan.next_run_at or now)}."))
    return answers
