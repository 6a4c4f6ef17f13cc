"""The append-only plan ledger: one writer function per event, the hash chains, verification, "why".

Chains (DESIGN §6): one per plan, serialised by the plan's row lock that every plan write already
holds; one per tenant for entries that belong to no plan, serialised by a transaction-scoped
advisory lock. entry_hash = sha256(prev_hash + canonical JSON of the entry). A unique
(chain, chain_seq) constraint makes a fork impossible even if a caller forgot the lock.
"""
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from decimal import Decimal
from uuid import UUID

from django.db import connection
from django.utils import timezone as dj_timezone

from plans.errors import Reason
from plans.lifecycle import MoveRule
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan

GENESIS_HASH = "0" * 64
# A transaction that appended before a digest may commit just after it; the next digest looks
# back this far so such a head is still recorded. No plan transaction runs for an hour.
DIGEST_OVERLAP = timedelta(hours=1)

STOP_EVENTS = {
    PlanStatus.PAUSED: EventType.PLAN_PAUSED,
    PlanStatus.COMPLETED: EventType.PLAN_COMPLETED,
    PlanStatus.ABORTED: EventType.PLAN_ABORTED,
    PlanStatus.EXPIRED: EventType.PLAN_EXPIRED,
}


def user_actor(user) -> str:
    return f"user:{user.pk}"


def system_actor(component: str) -> str:
    return f"system:{component}"


def _postgresql_number(text: str) -> float | int:
    # jsonb keeps numbers as exact decimals and prints them without an exponent: the float 1e+20
    # comes back as the integer 100000000000000000000 (a float written with "e+" is always whole).
    return int(Decimal(text)) if "e+" in text else float(text)


def _jsonable(data: dict) -> dict:
    """What PostgreSQL will hand back, so the stored entry hashes the same as the appended one."""
    return json.loads(json.dumps(data, default=str, sort_keys=True), parse_float=_postgresql_number)


def canonical_fields(entry: PlanLedgerEntry) -> dict:
    return {
        "tenant_id": str(entry.tenant_id),
        "plan_id": str(entry.plan_id) if entry.plan_id else None,
        "step_id": str(entry.step_id) if entry.step_id else None,
        "chain_seq": entry.chain_seq,
        "event_type": entry.event_type,
        "actor": entry.actor,
        "reason_code": entry.reason_code,
        "explanation": entry.explanation,
        "data": entry.data,
        "occurred_at": entry.occurred_at.astimezone(UTC).isoformat(),
    }


def compute_hash(prev_hash: str, entry: PlanLedgerEntry) -> str:
    canonical = json.dumps(canonical_fields(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def _lock_tenant_chain(tenant_id: UUID) -> None:
    # Advisory keys are signed 64-bit; the top half of the tenant UUID is plenty of spread.
    key = int.from_bytes(UUID(str(tenant_id)).bytes[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _append(
    *,
    tenant_id: UUID,
    plan_id: UUID | None,
    event_type: EventType,
    actor: str,
    reason_code: str = "",
    explanation: str = "",
    data: dict | None = None,
    step_id: UUID | None = None,
) -> PlanLedgerEntry:
    if not connection.in_atomic_block:
        raise RuntimeError("ledger entries are appended inside the transaction that makes the change")
    if plan_id is None:
        _lock_tenant_chain(tenant_id)
        head = PlanLedgerEntry.objects.filter(tenant_id=tenant_id, plan__isnull=True)
    else:
        head = PlanLedgerEntry.objects.filter(plan_id=plan_id)
    last = head.order_by("-chain_seq").values_list("chain_seq", "entry_hash").first()
    last_seq, prev_hash = last if last else (0, GENESIS_HASH)
    entry = PlanLedgerEntry(
        tenant_id=tenant_id,
        plan_id=plan_id,
        step_id=step_id,
        event_type=event_type,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation,
        data=_jsonable(data or {}),
        occurred_at=dj_timezone.now(),
        chain_seq=last_seq + 1,
        prev_hash=prev_hash,
    )
    entry.entry_hash = compute_hash(prev_hash, entry)
    entry.save(force_insert=True)
    return entry


def _snapshot(plan: RevenuePlan, steps=None) -> dict:
    from plans.schemas import plan_to_schema

    return plan_to_schema(plan, steps).model_dump(mode="json")


# --- one writer per event type -------------------------------------------------------------


def plan_created(plan: RevenuePlan, *, actor: str, trigger: str, inputs_summary: dict) -> PlanLedgerEntry:
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PLAN_CREATED,
        actor=actor,
        reason_code=trigger,
        explanation=f"{plan.plan_type} plan proposed for account {plan.account_id} ({trigger}).",
        data={"trigger": trigger, "inputs": inputs_summary, "plan": _snapshot(plan)},
    )


def plan_edited(plan: RevenuePlan, *, actor: str, changed_fields: list[str]) -> PlanLedgerEntry:
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PLAN_EDITED,
        actor=actor,
        explanation=f"Draft edited: {', '.join(changed_fields)}.",
        data={"changed_fields": changed_fields, "plan": _snapshot(plan)},
    )


def plan_moved(
    plan: RevenuePlan,
    rule: MoveRule,
    *,
    from_status: str,
    actor: str,
    reason_code: str,
    explanation: str,
    facts: dict,
    steps=None,
) -> PlanLedgerEntry:
    """`steps`: the plan's steps when the caller holds them (saves reading them for the snapshot)."""
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=rule.event_type,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation,
        data={"from_status": from_status, "to_status": rule.target, "facts": facts, "plan": _snapshot(plan, steps)},
    )


def policy_rejected(plan: RevenuePlan, *, actor: str, attempted: str, reasons: Iterable[Reason]) -> PlanLedgerEntry:
    reason_list = [reason.as_dict() for reason in reasons]
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.POLICY_REJECTED,
        actor=actor,
        reason_code=reason_list[0]["code"],
        explanation=f"The policy gate refused to {attempted} the plan: "
        + " ".join(reason["detail"] for reason in reason_list),
        data={"attempted": attempted, "reasons": reason_list},
    )


def activation_blocked(plan: RevenuePlan, *, actor: str, reasons: Iterable[Reason]) -> PlanLedgerEntry | None:
    """Written once per change of reasons, not on every tick that finds the plan still blocked."""
    reason_list = [reason.as_dict() for reason in reasons]
    last = PlanLedgerEntry.objects.filter(plan_id=plan.id).order_by("-chain_seq").first()
    if last and last.event_type == EventType.ACTIVATION_BLOCKED and last.data.get("reasons") == reason_list:
        return None
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.ACTIVATION_BLOCKED,
        actor=actor,
        reason_code=reason_list[0]["code"],
        explanation="The plan is approved but may not start yet: "
        + " ".join(reason["detail"] for reason in reason_list),
        data={"reasons": reason_list},
    )


def step_skipped(plan: RevenuePlan, *, step_id: UUID, actor: str, reason: str) -> PlanLedgerEntry:
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step_id,
        event_type=EventType.STEP_SKIPPED,
        actor=actor,
        reason_code="STEP_SKIPPED",
        explanation=reason,
        data={"plan": _snapshot(plan)},
    )


def step_approved(plan: RevenuePlan, *, step_id: UUID, actor: str) -> PlanLedgerEntry:
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step_id,
        event_type=EventType.STEP_APPROVED,
        actor=actor,
        explanation="A person approved the step; it runs on the next advance.",
        data={"plan": _snapshot(plan)},
    )


def plan_owner_changed(plan: RevenuePlan, *, actor: str, old_owner_id, new_owner_id) -> PlanLedgerEntry:
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PLAN_OWNER_CHANGED,
        actor=actor,
        reason_code="OWNERSHIP_CHANGED",
        explanation=f"The account changed owner; the plan moved from user {old_owner_id} to user {new_owner_id}.",
        data={"old_owner_id": old_owner_id, "new_owner_id": new_owner_id, "plan": _snapshot(plan)},
    )


def account_owner_changed(account, *, actor: str, old_owner_id, new_owner_id, plan_ids: list) -> PlanLedgerEntry:
    return _append(
        tenant_id=account.tenant_id,
        plan_id=None,
        event_type=EventType.ACCOUNT_OWNER_CHANGED,
        actor=actor,
        reason_code="OWNERSHIP_CHANGED",
        explanation=f"Account {account.name} moved from user {old_owner_id} to user {new_owner_id}.",
        data={
            "account_id": str(account.id),
            "old_owner_id": old_owner_id,
            "new_owner_id": new_owner_id,
            "plan_ids": [str(plan_id) for plan_id in plan_ids],
        },
    )


def kill_switch_flipped(tenant_id: UUID, *, actor: str, action_type: str, engaged: bool, reason: str):
    scope = f"action type {action_type}" if action_type else "the whole tenant"
    return _append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=EventType.KILL_SWITCH_FLIPPED,
        actor=actor,
        reason_code="KILL_SWITCH_ENGAGED" if engaged else "KILL_SWITCH_RELEASED",
        explanation=f"Execution {'stopped' if engaged else 'allowed again'} for {scope}: {reason}",
        data={"action_type": action_type, "engaged": engaged, "reason": reason},
    )


def autonomy_changed(tenant_id: UUID, *, actor: str, reason_code: str, explanation: str, data: dict):
    """A tenant's autonomy settings changed (mode, opt-in, budget): who, what, from what to what."""
    return _append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=EventType.AUTONOMY_CHANGED,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation,
        data=data,
    )


def tenant_digest(tenant_id: UUID, *, actor: str) -> PlanLedgerEntry:
    """Record the head of every plan chain that changed since the previous digest."""
    _lock_tenant_chain(tenant_id)
    previous = (
        PlanLedgerEntry.objects.filter(tenant_id=tenant_id, plan__isnull=True, event_type=EventType.LEDGER_DIGEST)
        .order_by("-chain_seq")
        .first()
    )
    heads = PlanLedgerEntry.objects.filter(tenant_id=tenant_id, plan__isnull=False)
    if previous is not None:
        changed_plan_ids = (
            PlanLedgerEntry.objects.filter(
                tenant_id=tenant_id, plan__isnull=False, occurred_at__gte=previous.occurred_at - DIGEST_OVERLAP
            )
            .values("plan_id")
            .distinct()
        )
        heads = heads.filter(plan_id__in=changed_plan_ids)
    head_rows = heads.order_by("plan_id", "-chain_seq").distinct("plan_id").values_list(
        "plan_id", "chain_seq", "entry_hash"
    )
    recorded = {str(plan_id): {"chain_seq": seq, "entry_hash": entry_hash} for plan_id, seq, entry_hash in head_rows}
    return _append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=EventType.LEDGER_DIGEST,
        actor=actor,
        explanation=f"Digest of {len(recorded)} plan chain head(s).",
        data={"plan_heads": recorded},
    )



def step_attempt_started(plan: RevenuePlan, *, step, intent, actor: str) -> PlanLedgerEntry:
    decision = intent.autonomy_decision
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id,
        event_type=EventType.STEP_ATTEMPT_STARTED,
        actor=actor,
        reason_code=decision.get("reason", ""),
        explanation=f"Attempt {intent.attempt} of {step.action_type} started: {decision.get('explanation', '')}",
        data={"attempt": intent.attempt, "intent_id": str(intent.id), "autonomy_decision": decision},
    )


def step_awaiting_approval(plan: RevenuePlan, *, step, decision: dict, actor: str) -> PlanLedgerEntry:
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id,
        event_type=EventType.STEP_AWAITING_APPROVAL,
        actor=actor,
        reason_code=decision.get("reason", ""),
        explanation=f"{step.action_type} waits for a person's approval: {decision.get('explanation', '')}",
        data={"autonomy_decision": decision},
    )


def step_retry_scheduled(plan: RevenuePlan, *, step, attempt: int, error: str, next_attempt_at, actor: str):
    return _append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id,
        event_type=EventType.STEP_RETRY_SCHEDULED,
        actor=actor,
        reason_code="STEP_FAILED",
        explanation=f"Attempt {attempt} of {step.action_type} failed ({error}); attempt {attempt + 1} at "
        f"{next_attempt_at:%Y-%m-%d %H:%M:%S} UTC.",
        data={"attempt": attempt, "error": error, "next_attempt_at": next_attempt_at.isoformat()},
    )

def _intent_entry(intent, event_type: EventType, *, actor: str, reason_code: str, explanation: str, data: dict):
    """Action events go to the plan's chain when the intent comes from a step, else the tenant's.

    The caller holds the plan's row lock (plans.locking.lock_plan) for plan-step intents.
    """
    return _append(
        tenant_id=intent.tenant_id,
        plan_id=intent.plan_id,
        step_id=intent.step_id,
        event_type=event_type,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation,
        data={
            "intent_id": str(intent.id),
            "action_type": intent.action_type,
            "account_id": str(intent.account_id),
            "attempt": intent.attempt,
            **data,
        },
    )


def action_retry_scheduled(intent, *, actor: str, attempt_number: int, error: str, delay_seconds: float):
    return _intent_entry(
        intent, EventType.ACTION_RETRY_SCHEDULED, actor=actor, reason_code="TRANSIENT_ERROR",
        explanation=f"Try {attempt_number} of {intent.action_type} failed ({error}); trying again in "
        f"{delay_seconds:.2f}s.",
        data={"attempt_number": attempt_number, "error": error, "delay_seconds": delay_seconds},
    )


def action_executed(intent, *, actor: str, outcome: str):
    return _intent_entry(
        intent, EventType.ACTION_EXECUTED, actor=actor, reason_code=outcome,
        explanation=f"{intent.action_type} done through the {intent.connector} connector after "
        f"{intent.attempts} try(s).",
        data={"outcome": outcome, "external_ids": intent.external_ids, "attempts": intent.attempts},
    )


def action_failed(intent, *, actor: str, outcome: str):
    return _intent_entry(
        intent, EventType.ACTION_FAILED, actor=actor, reason_code=intent.failure_class,
        explanation=f"{intent.action_type} failed ({intent.failure_class}): {intent.failure_reason}",
        data={"outcome": outcome, "failure_class": intent.failure_class, "failure_reason": intent.failure_reason,
              "attempts": intent.attempts},
    )


def action_blocked(intent, *, actor: str, blocked_by: str):
    return _intent_entry(
        intent, EventType.ACTION_BLOCKED, actor=actor, reason_code="KILL_SWITCH",
        explanation=f"{intent.action_type} was not sent: {blocked_by} is on.",
        data={"blocked_by": blocked_by},
    )


def action_expired(intent, *, actor: str):
    return _intent_entry(
        intent, EventType.ACTION_EXPIRED, actor=actor, reason_code="EXPIRED",
        explanation=f"{intent.action_type} was not sent: its approval expired at {intent.expires_at.isoformat()}.",
        data={"expires_at": intent.expires_at.isoformat()},
    )


def action_cancelled(intent, *, actor: str):
    return _intent_entry(
        intent, EventType.ACTION_CANCELLED, actor=actor, reason_code="CANCELLED",
        explanation=f"{intent.action_type} was cancelled before it ran.", data={},
    )


def action_compensated(intent, *, actor: str):
    return _intent_entry(
        intent, EventType.ACTION_COMPENSATED, actor=actor, reason_code="COMPENSATED",
        explanation=f"{intent.action_type} was undone through the {intent.connector} connector.",
        data={"external_ids": intent.external_ids},
    )

# --- verification ----------------------------------------------------------------------------


@dataclass
class VerifyReport:
    chains: int = 0
    entries: int = 0
    broken: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken


def _walk_chain(entries: Iterator[PlanLedgerEntry], key) -> Iterator[tuple[object, PlanLedgerEntry, str | None]]:
    """Yield (chain key, entry, problem or None) along chains ordered by (key, chain_seq)."""
    current_key, expected_seq, prev_hash = object(), 1, GENESIS_HASH
    for entry in entries:
        if key(entry) != current_key:
            current_key, expected_seq, prev_hash = key(entry), 1, GENESIS_HASH
        problem = None
        if entry.chain_seq != expected_seq:
            problem = f"expected chain position {expected_seq}, found {entry.chain_seq} (an entry is missing)"
        elif entry.prev_hash != prev_hash:
            problem = "prev_hash does not match the entry before it"
        elif compute_hash(entry.prev_hash, entry) != entry.entry_hash:
            problem = "entry_hash does not match the entry's contents (it was changed after it was written)"
        yield current_key, entry, problem
        expected_seq, prev_hash = entry.chain_seq + 1, entry.entry_hash


def verify_ledger(*, tenant_id: UUID | None = None, plan_id: UUID | None = None) -> VerifyReport:
    """Walk the chains (all, one tenant's, or one plan's); report the first broken entry per chain."""
    report = VerifyReport()
    entries = PlanLedgerEntry.objects.all()
    if tenant_id is not None:
        entries = entries.filter(tenant_id=tenant_id)
    plan_entries = entries.filter(plan__isnull=False)
    if plan_id is not None:
        plan_entries = plan_entries.filter(plan_id=plan_id)
    chains = [(plan_entries.order_by("plan_id", "chain_seq"), lambda e: e.plan_id)]
    if plan_id is None:
        chains.append((entries.filter(plan__isnull=True).order_by("tenant_id", "chain_seq"), lambda e: e.tenant_id))
    broken_chains = set()
    for queryset, key in chains:
        seen_chains = set()
        for chain_key, entry, problem in _walk_chain(queryset.iterator(chunk_size=2000), key):
            seen_chains.add(chain_key)
            report.entries += 1
            if problem and chain_key not in broken_chains:
                broken_chains.add(chain_key)
                report.broken.append(f"entry {entry.pk} ({entry.chain_label}, position {entry.chain_seq}): {problem}")
            if entry.event_type == EventType.LEDGER_DIGEST and plan_id is None:
                report.broken.extend(_missing_digest_heads(entry))
        report.chains += len(seen_chains)
    return report


def _missing_digest_heads(digest: PlanLedgerEntry) -> list[str]:
    heads = digest.data.get("plan_heads", {})
    if not heads:
        return []
    present = set(
        PlanLedgerEntry.objects.filter(plan_id__in=list(heads)).values_list("plan_id", "chain_seq", "entry_hash")
    )
    return [
        f"entry {digest.pk} (digest, {digest.chain_label}): plan {plan_id} lacks the head it recorded "
        f"at position {head['chain_seq']} (the plan chain was cut or rewritten)"
        for plan_id, head in sorted(heads.items())
        if (UUID(plan_id), head["chain_seq"], head["entry_hash"]) not in present
    ]


# --- why ------------------------------------------------------------------------------------


def why_plan_exists(plan_id: UUID) -> PlanLedgerEntry | None:
    """The creation entry: its data holds the trigger and the inputs the proposal used."""
    return PlanLedgerEntry.objects.filter(plan_id=plan_id, event_type=EventType.PLAN_CREATED).first()


def why_plan_stopped(plan: RevenuePlan) -> PlanLedgerEntry | None:
    """The entry that put a PAUSED or finished plan where it is (None while it runs or waits)."""
    event_type = STOP_EVENTS.get(plan.plan_status)
    if event_type is None:
        return None
    return PlanLedgerEntry.objects.filter(plan_id=plan.id, event_type=event_type).order_by("-chain_seq").first()

