"""Worker memory over a long run (`make bench`; issue 16: flat over 100,000 steps, last 10% vs first 10%).

One worker (concurrency 2) and the beat run BENCH_SCALE x 100,000 steps of 10-step brief plans (internal
connector; each plan's steps chain inline in one task), released in waves so the queue stays short (a plan
claimed and left waiting past the re-enqueue guard would be sent twice). Every second the pool children's
VmRSS is sampled with the number of steps done so far (from the worker's log). A short warm-up runs first:
what a child loads on its first tasks is not growth. On a loaded machine the run is bounded by
BENCH_RSS_SECONDS (1,000 s x BENCH_SCALE): then the ratio is over the steps that ran, and the report says so.
"""
import os
import statistics
import time

import pytest
from django.utils import timezone

from plans.models import RevenuePlan
from tests.bench.bench_orchestrator import make_brief_plans
from tests.bench.conftest import SCALE, check_targets, record, scaled, target, wait_worker_ready
from tests.bench.measure import StepLog, pool_rss_kib
from tests.conftest import build_world

STEPS_PER_PLAN = 10
WAVE_PLANS = 50
# Released but not finished, in steps, before the next wave goes: a few seconds of work at today's rates.
BACKLOG_STEPS = 1_000
RSS_SECONDS = float(os.environ.get("BENCH_RSS_SECONDS", str(1000 * SCALE)))


@pytest.mark.timeout(7200)
def test_worker_rss_over_many_steps(bench_cluster):
    world = build_world()
    wanted_steps = scaled(100_000, minimum=2_000)
    plan_ids = make_brief_plans(world, wanted_steps // STEPS_PER_PLAN, steps_of=lambda i: STEPS_PER_PLAN)
    warm = make_brief_plans(world, 10, steps_of=lambda i: STEPS_PER_PLAN)
    worker = bench_cluster.start_worker(concurrency=2)
    wait_worker_ready(worker)
    steps_log = StepLog(worker.log_path)
    bench_cluster.start_beat()

    def release(ids) -> None:
        RevenuePlan.objects.filter(id__in=ids).update(next_run_at=timezone.now())

    release(warm)
    assert steps_log.wait_for(len(warm) * STEPS_PER_PLAN, timeout=300), bench_cluster.logs()
    base = steps_log.poll()

    samples = []  # (steps done, {child pid: kib})
    released, started = 0, time.monotonic()
    next_sample = started
    while True:
        done = steps_log.poll() - base
        if done >= wanted_steps or time.monotonic() - started > RSS_SECONDS:
            break
        if released < len(plan_ids) and released * STEPS_PER_PLAN - done < BACKLOG_STEPS:
            release(plan_ids[released:released + WAVE_PLANS])
            released += WAVE_PLANS
        if time.monotonic() >= next_sample:
            samples.append((done, pool_rss_kib(worker.pid)))
            next_sample += 1.0
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    samples.append((steps_log.poll() - base, pool_rss_kib(worker.pid)))
    done = samples[-1][0]
    assert worker.alive(), worker.tail()
    children = {pid for _, rss in samples for pid in rss}
    # The same children all along: a replaced child (a crash, a max-tasks recycle) would hide a leak.
    assert children == set(samples[0][1]), f"pool children changed: {children} vs {set(samples[0][1])}"

    def median_total(selected) -> float:
        return statistics.median(sum(rss.values()) for _, rss in selected)

    first = [s for s in samples if s[0] <= 0.1 * done]
    last = [s for s in samples if s[0] >= 0.9 * done]
    first_kib, last_kib = median_total(first), median_total(last)
    growth = last_kib / first_kib
    per_child = {pid: {"first_kib": statistics.median(rss[pid] for _, rss in first),
                       "last_kib": statistics.median(rss[pid] for _, rss in last)} for pid in sorted(children)}
    record("7_worker_rss", steps_wanted=wanted_steps, steps_done=done, reached_all=done >= wanted_steps,
           seconds=round(elapsed, 1), steps_per_s=round(done / elapsed, 2), samples=len(samples),
           pool_children=len(children), first_10pct_median_rss_mib=round(first_kib / 1024, 1),
           last_10pct_median_rss_mib=round(last_kib / 1024, 1), growth_last_over_first=round(growth, 4),
           per_child_kib=per_child)
    name = f"worker RSS: last 10% / first 10% of {done} steps (pool children)"
    target(name, growth, 1.10, op="<=", unit="x")
    check_targets([name])
