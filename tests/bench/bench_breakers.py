"""What the circuit breakers add to a step (`pytest tests/bench -o python_files='bench_*.py' -s -k breakers`).

A step with the breaker CLOSED calls gate() before its try and record() after it: two Redis round trips,
no database query. Measured here in-process against the configured Redis, per step, with the breakers on
and off (off: the two calls return at once), and the queries asserted to be none.
"""
import os
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.breakers import services
from orchestrator.execution.models import AttemptOutcome
from tests.bench.conftest import record, target
from tests.factories import TenantFactory

STEPS = int(os.environ.get("BENCH_BREAKER_STEPS", "5000"))


def one_step(tenant_id) -> None:
    verdict = services.gate(tenant_id, "crm", holder="bench")
    assert verdict.allowed
    services.record(tenant_id, "crm", AttemptOutcome.SUCCEEDED, holder="bench", probe=verdict.probe)


def per_step_us(tenant_id) -> float:
    started = time.perf_counter()
    for _ in range(STEPS):
        one_step(tenant_id)
    return (time.perf_counter() - started) / STEPS * 1e6


@pytest.mark.timeout(300)
def test_breakers_cost_per_step(db, settings):
    tenant_id = TenantFactory().id
    settings.REVPLAN_BREAKERS_ENABLED = True
    one_step(tenant_id)  # the first gate reads the (missing) row and caches CLOSED
    with CaptureQueriesContext(connection) as queries:
        on = min(per_step_us(tenant_id) for _ in range(3))
    settings.REVPLAN_BREAKERS_ENABLED = False
    off = min(per_step_us(tenant_id) for _ in range(3))
    # The cache expires every STATE_CACHE_SECONDS: at most one query per (tenant, connector) per that time.
    record("breakers", steps=STEPS, per_step_us_on=round(on, 1), per_step_us_off=round(off, 2),
           added_us=round(on - off, 1), queries=len(queries))
    print(f"\nbreakers: {on:.1f} µs per step on, {off:.2f} µs off, {len(queries)} queries in {3 * STEPS} steps")
    assert len(queries) <= 1
    target("breakers: added per step (gate + record, CLOSED)", on - off, 1000, op="<", unit="µs")
