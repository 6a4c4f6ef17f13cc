"""Policy backtesting: replay a tenant's recorded step decisions under candidate settings, read-only.

Every decision the engine made before a step attempt is in the ledger with the facts it was made on
(STEP_ATTEMPT_STARTED: the attempt ran; STEP_AWAITING_APPROVAL: a person was asked; data.autonomy_decision).
`backtest` streams them in the order they were made (a server-side cursor, RECORD_CHUNK at a time) and asks
the candidate policy again with the candidate settings in place of the recorded ones: each action type's
mode, the opt-in, and the daily budgets, simulated day by day (the UTC day, as the engine counts them).
What a candidate leaves unset stays as it was recorded (modes, opt-in) or as the tenant has it now
(budgets, which the recorded facts do not hold). A person's approval and a kill switch are history: they
stay. Budgets count from the start of the window's first UTC day (the decisions before `start` that day
are replayed for their budget use only). A retry takes no unit when its previous attempt, replayed, would
have run on its own (budgets aside), as the engine's retry of an autonomous attempt takes none.

The report is the same size for 10,000 decisions as for 10 million: counts by decision and reason before
and after, the flips by change and the first MAX_LISTED of them, and the budgets that would have run out
(per day, the first MAX_LISTED); the day's budget counters are dropped when the day ends.
"""
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, time
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from orchestrator.autonomy.models import AutonomyMode
from orchestrator.autonomy.policy import POLICY_VERSION, AutonomyDecision, Decision, StepFacts, decide
from orchestrator.autonomy.services import MAX_COUNT, autonomy_settings
from plans.models import EventType, PlanLedgerEntry
from plans.plan_types import ACTION_TYPES

POLICIES: dict[str, Callable[[StepFacts], AutonomyDecision]] = {POLICY_VERSION: decide}
DECISION_EVENTS = (EventType.STEP_ATTEMPT_STARTED, EventType.STEP_AWAITING_APPROVAL)
RECORD_CHUNK = 2000
MAX_LISTED = 100
_FACT_NAMES = {field.name for field in fields(StepFacts)}
Count = Field(default=None, ge=0, le=MAX_COUNT)


class ActionTypeCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: AutonomyMode | None = None
    max_per_day: StrictInt | None = Count


class CandidateSettings(BaseModel):
    """What to replay under; anything unset stays as recorded (modes, opt-in) or as the tenant has it (budgets)."""

    model_config = ConfigDict(extra="forbid")
    policy_version: str = POLICY_VERSION
    opted_in: StrictBool | None = None
    max_per_account_per_day: StrictInt | None = Count
    action_types: dict[str, ActionTypeCandidate] = Field(default_factory=dict)

    @field_validator("policy_version")
    @classmethod
    def _known_policy(cls, version: str) -> str:
        if version not in POLICIES:
            raise ValueError(f"unknown policy version; one of {', '.join(sorted(POLICIES))}")
        return version

    @field_validator("action_types")
    @classmethod
    def _known_action_types(cls, candidates: dict) -> dict:
        unknown = sorted(set(candidates) - set(ACTION_TYPES))
        if unknown:
            raise ValueError(f"unknown action types: {', '.join(unknown)}")
        return candidates


@dataclass(frozen=True)
class Record:
    entry_id: int
    plan_id: UUID
    step_id: UUID
    account_id: UUID
    occurred_at: datetime
    attempt: int | None
    decision: dict


def decision_records(tenant_id: UUID, *, start: datetime, end: datetime) -> Iterator[Record]:
    """The tenant's recorded step decisions in [start, end), oldest first, streamed."""
    rows = (PlanLedgerEntry.objects.filter(tenant_id=tenant_id, event_type__in=DECISION_EVENTS,
                                           occurred_at__gte=start, occurred_at__lt=end)
            .order_by("occurred_at", "id")
            .values_list("id", "plan_id", "step_id", "plan__account_id", "occurred_at", "data"))
    for entry_id, plan_id, step_id, account_id, occurred_at, data in rows.iterator(chunk_size=RECORD_CHUNK):
        decision = (data or {}).get("autonomy_decision")
        if decision and "facts" in decision:
            yield Record(entry_id, plan_id, step_id, account_id, occurred_at, data.get("attempt"), decision)


def decision_count(tenant_id: UUID, *, start: datetime, end: datetime) -> int:
    """How many entries decision_records reads (for a progress bar)."""
    return PlanLedgerEntry.objects.filter(tenant_id=tenant_id, event_type__in=DECISION_EVENTS,
                                          occurred_at__gte=start, occurred_at__lt=end).count()


def recorded_facts(decision: dict) -> StepFacts:
    """The facts a recorded decision (data.autonomy_decision) was made on."""
    return StepFacts(**{name: value for name, value in decision["facts"].items() if name in _FACT_NAMES})


def _candidate_facts(facts: StepFacts, candidate: "CandidateSettings", modes: dict[str, str]) -> StepFacts:
    return replace(facts, mode=modes.get(facts.action_type, facts.mode), budget_left=True,
                   opted_in=facts.opted_in if candidate.opted_in is None else candidate.opted_in)


def _previous_ran_on_its_own(record: Record, policy, candidate: "CandidateSettings", modes: dict[str, str]) -> bool:
    """Whether the attempt before this retry, replayed (budgets aside), would have run on its own: one read,
    for a retry only (a few of the decisions)."""
    data = PlanLedgerEntry.objects.filter(
        plan_id=record.plan_id, step_id=record.step_id, event_type=EventType.STEP_ATTEMPT_STARTED,
        data__attempt=record.attempt - 1,
    ).values_list("data", flat=True).first()
    decision = (data or {}).get("autonomy_decision") or {}
    if "facts" not in decision:
        return decision.get("decision") == Decision.AUTO_EXECUTE
    return policy(_candidate_facts(recorded_facts(decision), candidate, modes)).decision == Decision.AUTO_EXECUTE


def _takes_a_unit(record: Record, policy, candidate: "CandidateSettings", modes: dict[str, str]) -> bool:
    return (record.attempt or 1) <= 1 or not _previous_ran_on_its_own(record, policy, candidate, modes)


class _Budgets:
    """One day's simulated budget use; a new day starts from nothing."""

    def __init__(self, *, per_account: int, per_action_type: dict[str, int]):
        self.per_account, self.per_action_type = per_account, per_action_type
        self.day: date | None = None
        self.used_by_account: Counter = Counter()
        self.used_by_type: Counter = Counter()
        self.refused: dict[tuple, dict] = {}  # the day's exhausted budgets

    def start_day(self, day: date) -> list[dict]:
        """Move to `day`; returns the budgets the day before ran out of."""
        ended = list(self.refused.values()) if day != self.day else []
        if day != self.day:
            self.day, self.used_by_account, self.used_by_type, self.refused = day, Counter(), Counter(), {}
        return ended

    def take(self, record: Record, action_type: str, *, count_refusal: bool = True) -> bool:
        account_full = self.used_by_account[record.account_id] >= self.per_account
        type_full = self.used_by_type[action_type] >= self.per_action_type[action_type]
        if (account_full or type_full) and not count_refusal:
            return False
        if account_full or type_full:
            scope = ("action_type", action_type, None) if type_full else ("account", action_type, record.account_id)
            refused = self.refused.setdefault(scope, {
                "day": self.day.isoformat(), "budget": scope[0], "action_type": action_type,
                "account_id": str(scope[2]) if scope[2] else None, "first_refused_at": record.occurred_at.isoformat(),
                "refused": 0})
            refused["refused"] += 1
            return False
        self.used_by_account[record.account_id] += 1
        self.used_by_type[action_type] += 1
        return True


def _summary(decision: AutonomyDecision | dict) -> dict:
    if isinstance(decision, AutonomyDecision):
        return {"decision": str(decision.decision), "reason": str(decision.reason),
                "explanation": decision.explanation}
    return {"decision": decision.get("decision", ""), "reason": decision.get("reason", "")}


def backtest(tenant_id: UUID, *, start: datetime, end: datetime, candidate: CandidateSettings,
             on_progress: Callable[[int], None] | None = None) -> dict:
    """What would change had `candidate` applied to the decisions made in [start, end)."""
    current = autonomy_settings(tenant_id)
    modes = {name: spec.mode for name, spec in candidate.action_types.items() if spec.mode is not None}
    current_budgets = {row["action_type"]: row["max_per_day"] for row in current["action_types"]}
    budgets = _Budgets(
        per_account=_or(candidate.max_per_account_per_day, current["max_per_account_per_day"]),
        per_action_type={name: _or(candidate.action_types[name].max_per_day if name in candidate.action_types
                                   else None, current_budgets.get(name, 0)) for name in ACTION_TYPES})
    policy = POLICIES[candidate.policy_version]
    before, after, reasons_before, reasons_after, changes = Counter(), Counter(), Counter(), Counter(), Counter()
    flips: list[dict] = []
    exhausted: list[dict] = []
    exhausted_count = total = 0

    def note_exhausted(ended: list[dict]) -> None:
        nonlocal exhausted_count
        exhausted_count += len(ended)
        exhausted.extend(ended[:MAX_LISTED - len(exhausted)])

    first_day = datetime.combine(start.astimezone(UTC).date(), time.min, tzinfo=UTC)
    for record in decision_records(tenant_id, start=min(first_day, start), end=end):
        reported = record.occurred_at >= start
        if reported:
            total += 1
        note_exhausted(budgets.start_day(record.occurred_at.astimezone(UTC).date()))
        facts = _candidate_facts(recorded_facts(record.decision), candidate, modes)
        decision = policy(facts)
        if decision.decision == Decision.AUTO_EXECUTE and _takes_a_unit(record, policy, candidate, modes) \
                and not budgets.take(record, facts.action_type, count_refusal=reported):
            decision = policy(replace(facts, budget_left=False))
        if not reported:
            continue  # before the window, that day: its budget use only
        was, now = _summary(record.decision), _summary(decision)
        before[was["decision"]] += 1
        after[now["decision"]] += 1
        reasons_before[was["reason"]] += 1
        reasons_after[now["reason"]] += 1
        if was["decision"] != now["decision"]:
            changes[f"{was['decision']} -> {now['decision']}"] += 1
            if len(flips) < MAX_LISTED:
                flips.append({"entry_id": record.entry_id, "plan_id": str(record.plan_id),
                              "step_id": str(record.step_id), "attempt": record.attempt,
                              "action_type": facts.action_type, "occurred_at": record.occurred_at.isoformat(),
                              "before": was, "after": now})
        if on_progress is not None:
            on_progress(1)
    note_exhausted(budgets.start_day(None))
    return {
        "tenant_id": str(tenant_id), "from": start.isoformat(), "to": end.isoformat(),
        "policy_version": candidate.policy_version, "decisions": total,
        "settings": {"opted_in": candidate.opted_in, "modes": modes, "max_per_account_per_day": budgets.per_account,
                     "max_per_day": budgets.per_action_type},
        "before": dict(before), "after": dict(after),
        "reasons_before": dict(reasons_before), "reasons_after": dict(reasons_after),
        "flips": {"count": sum(changes.values()), "by_change": dict(changes), "first": flips},
        "budget_exhausted": {"count": exhausted_count, "first": exhausted},
    }


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
