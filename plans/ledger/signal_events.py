"""Writers for a tenant's chain: signals taken from outside (one by one, or an import's batch)."""
from plans.ledger.chain import append
from plans.models import AccountSignal, EventType, PlanLedgerEntry


def signal_recorded(signal: AccountSignal, *, actor: str, account_name: str, woken_plan_ids: list[str],
                    token_name: str = "") -> PlanLedgerEntry:
    """A signal from outside was recorded: who sent it, what and where from. Not its payload: that is the
    source's data (it may name people), and the row keeps it; the entry says how large it was.
    token_name: the integration token it came with (the actor holds its id), named as its admin named it."""
    origin = f"{signal.source} ({signal.external_id})" if signal.external_id else signal.source
    if token_name:
        origin += f" with integration token {token_name!r}"
    return append(
        tenant_id=signal.tenant_id,
        plan_id=None,
        event_type=EventType.SIGNAL_RECORDED,
        actor=actor,
        reason_code=signal.signal_type,
        explanation=f"{signal.signal_type} for account {account_name} from {origin}, observed "
                    f"{signal.observed_at.isoformat()}."
                    + (f" {len(woken_plan_ids)} plan(s) it may complete were made due." if woken_plan_ids else ""),
        data={
            "signal_id": signal.pk,
            "account_id": str(signal.account_id),
            "signal_type": signal.signal_type,
            "source": signal.source,
            "external_id": signal.external_id,
            "observed_at": signal.observed_at.isoformat(),
            "payload_keys": sorted(signal.payload)[:50],
            "woken_plan_ids": woken_plan_ids,
            **({"integration_token_name": token_name} if token_name else {}),
        },
    )


def signals_imported(tenant_id, *, actor: str, file_name: str, batch: int, lines: tuple[int, int], counts: dict,
                     signal_ids: list[int], woken_plan_ids: list[str]) -> PlanLedgerEntry:
    """One batch of an import: its lines, what was taken and what was already there, and the new rows' ids."""
    return append(
        tenant_id=tenant_id,
        plan_id=None,
        event_type=EventType.SIGNALS_IMPORTED,
        actor=actor,
        reason_code="SIGNALS_IMPORTED",
        explanation=f"Import of {file_name}, batch {batch} (lines {lines[0]}-{lines[1]}): {counts['taken']} taken, "
                    f"{counts['duplicate']} already recorded, {counts['refused']} refused.",
        data={
            "file": file_name,
            "batch": batch,
            "first_line": lines[0],
            "last_line": lines[1],
            "counts": counts,
            "signal_ids": signal_ids,
            "woken_plan_ids": woken_plan_ids,
        },
    )
