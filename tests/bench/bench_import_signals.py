"""import_signals on a 10,000-row file (`pytest tests/bench -o python_files='bench_*.py' -s -k import_signals`):
wall time with the progress bar on, and the same file again (all duplicates). Target: 10,000 rows in under 30 s
on this 2-core machine (bulk INSERT … ON CONFLICT in batches of 1,000, one ledger entry per batch)."""
import csv
import json
import time

from django.core.management import call_command

from plans.models import AccountSignal, EventType, PlanLedgerEntry
from tests.bench.conftest import check_targets, record, scaled, target
from tests.factories import AccountFactory

TYPES = ("SUPPORT_RISK", "RENEWAL_AT_RISK", "NO_RESPONSE", "CHAMPION_LEFT", "RENEWAL_COMMITTED")


def test_import_signals_10000_rows(world, tmp_path):
    rows = scaled(10_000)
    accounts = [AccountFactory(tenant=world.tenant, owner=world.seller) for _ in range(100)]
    path = tmp_path / "signals.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["account_external_id", "signal_type", "observed_at", "source", "external_id", "payload"])
        for number in range(rows):
            writer.writerow([accounts[number % len(accounts)].external_id, TYPES[number % len(TYPES)],
                             "2026-11-01T12:00:00Z", "crm", f"evt-{number}",
                             json.dumps({"ticket": number, "note": "imported by the benchmark"})])

    started = time.perf_counter()
    call_command("import_signals", str(path), "--tenant", world.tenant.slug)
    first = time.perf_counter() - started
    started = time.perf_counter()
    call_command("import_signals", str(path), "--tenant", world.tenant.slug)
    again = time.perf_counter() - started

    assert AccountSignal.objects.filter(tenant=world.tenant).count() == rows
    batches = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.SIGNALS_IMPORTED).count()
    record("import_signals", rows=rows, seconds=round(first, 2), rerun_seconds=round(again, 2),
           rows_per_second=round(rows / first), ledger_entries=batches)
    print(f"\nimport_signals: {rows} rows in {first:.2f} s ({rows / first:.0f}/s); again (all duplicates) "
          f"{again:.2f} s; {batches} ledger entries")
    target("import_signals_10000_rows_seconds", first, 30, op="<", unit="s")
    check_targets(["import_signals_10000_rows_seconds"])
