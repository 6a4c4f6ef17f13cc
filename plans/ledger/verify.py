"""Verification: walk the chains and report the first broken entry of each, and digest heads that are gone."""
from collections.abc import Iterator
from dataclasses import dataclass, field
from uuid import UUID

from plans.ledger.chain import GENESIS_HASH, compute_hash
from plans.models import EventType, PlanLedgerEntry


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
