"""The audit export streams: peak RSS of a fresh process exporting 10,000 vs 100,000 ledger entries
(`make bench`, or `pytest tests/bench -o python_files='bench_*.py' -s -k export`).

Each measurement runs in its own process (tests/bench/export_rss.py) so its peak RSS is its own. Flat
memory: the 100,000-entry export peaks within a few MiB of the 10,000-entry one, while loading the
same entries into a list first (the contrast) grows with the count.
"""
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from plans import ledger
from plans.models import EventType, PlanLedgerEntry
from tests.bench.conftest import record, scaled, target
from tests.conftest import build_world
from tests.integration.harness import ROOT

BATCH = 5000


def fill_tenant_chain(tenant_id, count: int) -> None:
    """`count` valid, hash-chained tenant-chain entries, as the ledger writes them, in a few bulk inserts."""
    started = timezone.now() - timedelta(days=30)
    prev_hash, seq = ledger.GENESIS_HASH, 0
    while seq < count:
        batch = []
        for _ in range(min(BATCH, count - seq)):
            seq += 1
            entry = PlanLedgerEntry(
                tenant_id=tenant_id, plan_id=None, event_type=EventType.KILL_SWITCH_FLIPPED, actor="system:bench",
                reason_code="KILL_SWITCH_ENGAGED", explanation=f"Bench entry {seq}: execution stopped for a test.",
                data={"action_type": "", "engaged": True, "reason": f"bench {seq}", "pad": "x" * 200},
                occurred_at=started + timedelta(milliseconds=seq), chain_seq=seq, prev_hash=prev_hash,
            )
            entry.entry_hash = prev_hash = ledger.compute_hash(prev_hash, entry)
            batch.append(entry)
        # The manager refuses bulk writes (one append at a time in production); a benchmark's set-up may.
        QuerySet(model=PlanLedgerEntry).bulk_create(batch)


def measure(world, limit: int, mode: str) -> dict:
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "revplan.settings", "ALLOWED_HOSTS": "testserver",
           "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                           f"{db['NAME']}"}
    out = subprocess.run([sys.executable, "-m", "tests.bench.export_rss", str(world.tenant.id), world.admin.username,
                          str(limit), mode], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(900)
def test_export_streams_with_flat_memory(transactional_db):
    world = build_world()
    total = scaled(100_000, minimum=20_000)
    small = total // 10
    fill_tenant_chain(world.tenant.id, total)
    results = {
        "stream_small": measure(world, small, "stream"),
        "stream_all": measure(world, 0, "stream"),
        "materialise_small": measure(world, small, "materialise"),
        "materialise_all": measure(world, 0, "materialise"),
    }
    assert results["stream_all"]["lines"] == total
    assert results["stream_small"]["lines"] == small
    mib = {name: (r["peak_rss_kib"] - r["rss_before_kib"]) / 1024 for name, r in results.items()}
    record("5_export_memory", entries_small=small, entries_all=total,
           export_mib_all=results["stream_all"]["bytes"] / 2**20,
           peak_rss_mib_stream_all=results["stream_all"]["peak_rss_kib"] / 1024,
           peak_growth_mib_stream_small=mib["stream_small"], peak_growth_mib_stream_all=mib["stream_all"],
           peak_growth_mib_materialise_small=mib["materialise_small"],
           peak_growth_mib_materialise_all=mib["materialise_all"])
    target("export: peak RSS growth, 100k vs 10k entries (MiB)", mib["stream_all"] - mib["stream_small"], 16,
           op="<=", unit="MiB")
    assert mib["stream_all"] - mib["stream_small"] < 32, mib
