"""Policy backtesting's memory (`make bench`, or `pytest tests/bench -o python_files='bench_*.py' -s -k backtest`):
the peak of Python allocations (tracemalloc) while replaying 10,000 and then 100,000 recorded decisions of one
tenant in the same 20-day window. Flat: the records stream from a server-side cursor and the report keeps
counts, the first 100 flips and the first 100 exhausted budgets; the budget counters live for one day.
"""
import time
import tracemalloc
from datetime import timedelta

import pytest

from orchestrator.autonomy import backtest
from tests.bench.conftest import check_targets, record, scaled, target
from tests.conftest import build_world
from tests.orchestrator.autonomy.test_backtest import CANDIDATE, seed_decisions

GROWTH = 1.25


def peak_of_backtest(world, start, end) -> tuple[int, dict, float]:
    candidate = backtest.CandidateSettings.model_validate(CANDIDATE)
    tracemalloc.start()
    started = time.perf_counter()
    report = backtest.backtest(world.tenant.id, start=start, end=end, candidate=candidate)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, report, seconds


@pytest.mark.timeout(900)
def test_backtest_memory_is_flat_from_10k_to_100k_decisions(db):
    small_world, large_world = build_world(), build_world()
    small, large = scaled(10_000, minimum=2_000), scaled(100_000, minimum=20_000)
    small_window = seed_decisions(small_world, small)
    large_window = seed_decisions(large_world, large)
    # One warm-up replay: the first call's imports and compiled queries are not the replay's memory.
    backtest.backtest(small_world.tenant.id, start=small_window[0], end=small_window[0] + timedelta(days=1),
                      candidate=backtest.CandidateSettings())
    small_peak, small_report, small_s = peak_of_backtest(small_world, *small_window)
    large_peak, large_report, large_s = peak_of_backtest(large_world, *large_window)
    assert (small_report["decisions"], large_report["decisions"]) == (small, large)
    record("6_backtest_memory", decisions_small=small, decisions_large=large,
           peak_kib_small=round(small_peak / 1024), peak_kib_large=round(large_peak / 1024),
           seconds_small=round(small_s, 2), seconds_large=round(large_s, 2),
           decisions_per_s_large=round(large / large_s))
    name = f"backtest: peak memory, {large} vs {small} decisions"
    target(name, large_peak / small_peak, GROWTH, op="<=", unit="x")
    check_targets([name])
