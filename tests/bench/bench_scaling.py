"""Per-step database cost against the number of plans in the database, and one worker against two
(`make bench`; issue 16's targets). See tests/bench/measure.py for how the counters are read.

5. per-step cost vs plans in the database: the same number of due 2-step brief plans run by a real
   worker (concurrency 2, the beat ticking every second) among 500, 5,000 and 20,000 plans (idle ones
   bulk-loaded as bench_orchestrator.load_plans does, then ANALYZE, then a few plans run outside the window so
   the workers' backends have rebuilt what the new statistics invalidated). Per step: tuples fetched, commits,
   connections opened (pg_stat_database.sessions), from pg_stat_database deltas; per table (the catalog's too:
   what a reconnect or an invalidation costs) from pg_stat_all_tables, with the autovacuums run in the window.
   The test process puts no query on the database inside a window but the two reads of the counters,
   whose own cost is measured on the quiet database first and subtracted; the end of a run is seen in
   the worker's log, not by polling the database.
6. 2 workers x concurrency 2 against 1 x 2: governed steps/s on batches of the same plans, the single
   worker run before and after the pair (their mean is the baseline, their spread the noise).
"""
import statistics
import time

import pytest
from django.db import connection
from django.utils import timezone

from orchestrator.execution.models import ActionIntent, IntentStatus
from plans.models import PlanStatus, RevenuePlan
from tests.bench.bench_orchestrator import IDLE_FIRST, analyze, load_plans, make_brief_plans
from tests.bench.conftest import check_targets, record, scaled, target, wait_worker_ready
from tests.bench.measure import STATS_SETTLE_SECONDS, DbCounters, StepLog, per_step
from tests.conftest import build_world
from tests.integration.harness import wait_for

SIZES = (500, 5_000, 20_000)
RUN_TIMEOUT = 600
SETTLE_PLANS = 10


def release(plan_ids) -> None:
    """Due now: the next tick (the beat's) claims them and fans them out."""
    RevenuePlan.objects.filter(id__in=plan_ids).update(next_run_at=timezone.now())


def backends_started_since(moment) -> list[dict]:
    """The connections to this database opened since `moment` that are still open (which process opened
    the ones pg_stat_database.sessions counted, when they stayed: the pid is the backend's, the port the client's)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid, client_port, backend_start, state, left(query, 80) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND backend_type = 'client backend' AND backend_start >= %s",
                       [moment])
        return [{"pid": row[0], "client_port": row[1], "backend_start": row[2].isoformat(), "state": row[3],
                 "last_query": row[4]} for row in cursor.fetchall()]


def governed_rate(plan_ids) -> dict:
    """Steps per second from the first plan's activation to the last step's finish (as test_throughput_...)."""
    plans = RevenuePlan.objects.filter(id__in=plan_ids)
    assert plans.filter(plan_status=PlanStatus.COMPLETED).count() == len(plan_ids)
    succeeded = ActionIntent.objects.filter(plan_id__in=plan_ids, status=IntentStatus.SUCCEEDED)
    steps = succeeded.count()
    first = min(plans.values_list("activated_at", flat=True))
    last = max(succeeded.values_list("finished_at", flat=True))
    seconds = (last - first).total_seconds()
    return {"steps": steps, "seconds": round(seconds, 3), "steps_per_s": round(steps / seconds, 2)}


@pytest.mark.timeout(1200)
def test_step_cost_vs_plans_in_database(bench_cluster):
    world = build_world()
    counters = DbCounters()
    own_reads = dict(counters.calibrate())  # before any worker: only this process is on the test database

    def start_beat():
        return bench_cluster.start_beat()

    def stop_beat(beat) -> None:
        beat.stop()
        bench_cluster.procs.remove(beat)

    def beat_alone() -> None:
        beat = start_beat()
        wait_for(lambda: b"beat: Starting" in beat.log_path.read_bytes(), timeout=60, what="the beat")
        time.sleep(3)
        stop_beat(beat)

    # A beat opens a connection of its own when it starts (1 session, a few commits): a window starts one,
    # so what one costs with no worker to run its ticks is counted apart too.
    beat_start = counters.count_apart(beat_alone, settle=2)
    worker = bench_cluster.start_worker(concurrency=2)
    wait_worker_ready(worker)
    steps_log = StepLog(worker.log_path)
    due_plans = scaled(800, minimum=100)  # x 2 steps: at least 200, so one connection shows as 0.005 / step

    def run(plan_ids, steps: int) -> float:
        """Release, tick with a beat until the worker logged `steps` more outcomes, stop the beat."""
        target_count = steps_log.poll() + steps
        beat = start_beat()
        started = time.perf_counter()
        assert steps_log.wait_for(target_count, timeout=RUN_TIMEOUT), bench_cluster.logs()
        seconds = time.perf_counter() - started
        stop_beat(beat)
        return seconds

    # Warm-up: every pool child has imported everything and holds its connection before we count. A batch's
    # worth of plans, so the execution tables (intents, attempts, records, signals) hold a run's history when
    # the first level is analyzed, as in a system that has run: analyzed at a few dozen rows, PostgreSQL reads
    # them by sequential scans while the batch fills them (rows it counts as returned, not fetched).
    warm = make_brief_plans(world, due_plans, steps_of=lambda i: 2)
    release(warm)
    run(warm, 2 * due_plans)

    levels, loaded = [], 0
    for size in SIZES:
        batch = make_brief_plans(world, due_plans, steps_of=lambda i: 2)
        present = RevenuePlan.objects.count()
        load_plans(world, first=IDLE_FIRST + loaded, count=size - present, due=False)
        loaded += max(0, size - present)
        analyze()
        # ANALYZE changed the tables' statistics: each backend rebuilds what it cached of them (relation entries,
        # plans) on its next use of them. A few plans run first take that once-a-level cost out of the window.
        settle = make_brief_plans(world, SETTLE_PLANS, steps_of=lambda i: 2)
        release(settle)
        run(settle, 2 * SETTLE_PLANS)
        release(batch)
        time.sleep(STATS_SETTLE_SECONDS)  # the worker's backends have sent everything they had
        before = counters.read()
        window_started = timezone.now()
        seconds = run(batch, 2 * due_plans)
        time.sleep(STATS_SETTLE_SECONDS)
        database, tables = counters.window(before, counters.read())
        new_backends = backends_started_since(window_started)  # after the window: not counted in it
        rate = governed_rate(batch)
        steps = rate["steps"]
        assert steps == 2 * due_plans
        costs = per_step(database, steps)
        levels.append({"plans_in_database": RevenuePlan.objects.count(), "steps": steps,
                       "wall_seconds": round(seconds, 2), "steps_per_s": rate["steps_per_s"],
                       "backends_started_in_window_still_open": new_backends,
                       "per_step": costs, "window_totals": database,
                       # Of tup_fetched, what the application's tables gave (the rest: catalog reads, which a
                       # new backend does for every table it touches; see connections opened).
                       "user_tables_tup_fetched_per_step": round(sum(
                           row["idx_tup_fetch"] for name, row in tables.items() if name.startswith("public.")
                       ) / steps, 2),
                       "per_table_per_step": {name: per_step(row, steps, ndigits=2) for name, row in tables.items()},
                       "autovacuum_in_window": {name: {"vacuums": row["autovacuum_count"],
                                                       "analyzes": row["autoanalyze_count"]}
                                                for name, row in tables.items()
                                                if row["autovacuum_count"] or row["autoanalyze_count"]}})

    for level in levels:
        costs, size = level["per_step"], level["plans_in_database"]
        record("5_cost_vs_size", **{
            f"{size:>6} plans: tuples fetched / step": costs["tup_fetched"],
            f"{size:>6} plans: commits / step": costs["xact_commit"],
            f"{size:>6} plans: connections opened / step": costs["sessions"],
            f"{size:>6} plans: tuples fetched / step from the app's tables": level["user_tables_tup_fetched_per_step"],
            f"{size:>6} plans: tuples returned / inserted / updated per step":
                f"{costs['tup_returned']} / {costs['tup_inserted']} / {costs['tup_updated']}",
            f"{size:>6} plans: governed steps/s": level["steps_per_s"],
        })
    fetched = [level["per_step"]["tup_fetched"] for level in levels]
    flatness = max(fetched) / max(min(fetched), 1)  # the most against the fewest, whichever sizes
    record("5_cost_vs_size", levels=levels, due_plans_per_size=due_plans,
           own_cost_subtracted={"two_reads": own_reads, "beat_start": beat_start},
           tuples_fetched_most_over_fewest=round(flatness, 3))
    worst = {key: max(level["per_step"][key] for level in levels) for key in ("tup_fetched", "xact_commit",
                                                                              "sessions")}
    names = ["cost: tuples fetched per step (worst size)", "cost: tuples fetched per step, most / fewest size",
             "cost: commits per step (worst size)", "cost: connections opened per step (worst size)"]
    target(names[0], worst["tup_fetched"], 100, op="<=")
    target(names[1], flatness, 1.2, op="<=", unit="x")
    target(names[2], worst["xact_commit"], 4, op="<=")
    target(names[3], worst["sessions"], 0.01, op="<=")
    check_targets(names)


@pytest.mark.timeout(1200)
def test_two_workers_against_one(bench_cluster):
    world = build_world()
    plans = scaled(1000, minimum=100)
    batches = [make_brief_plans(world, plans, steps_of=lambda i: 1 + i % 2) for _ in range(3)]
    steps_per_batch = plans + plans // 2
    first = bench_cluster.start_worker("w1", concurrency=2)
    wait_worker_ready(first)
    steps_log = StepLog(first.log_path)
    bench_cluster.start_beat()
    warm = make_brief_plans(world, 20, steps_of=lambda i: 2)
    release(warm)
    assert steps_log.wait_for(40, timeout=RUN_TIMEOUT)

    def run(batch) -> dict:
        target_count = steps_log.poll() + steps_per_batch
        release(batch)
        assert steps_log.wait_for(target_count, timeout=RUN_TIMEOUT), bench_cluster.logs()
        time.sleep(0.5)  # the last outcome's log line can precede its plan's completion commit
        return governed_rate(batch)

    one_before = run(batches[0])
    second = bench_cluster.start_worker("w2", concurrency=2)
    wait_worker_ready(second)
    steps_log.add(second.log_path)
    two = run(batches[1])
    second.stop()
    one_after = run(batches[2])
    one = statistics.mean([one_before["steps_per_s"], one_after["steps_per_s"]])
    ratio = two["steps_per_s"] / one
    record("6_workers", plans_per_batch=plans, steps_per_batch=steps_per_batch,
           one_worker_x2_before_steps_per_s=one_before["steps_per_s"],
           two_workers_x2_steps_per_s=two["steps_per_s"],
           one_worker_x2_after_steps_per_s=one_after["steps_per_s"],
           ratio_two_workers_to_one=round(ratio, 3),
           one_worker_spread=round(abs(one_before["steps_per_s"] - one_after["steps_per_s"]) / one, 3),
           runs={"one_before": one_before, "two": two, "one_after": one_after})
