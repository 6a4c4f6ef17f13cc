"""Orchestrator benchmarks (`make bench`; BENCH_SCALE=0.1 for a quick run). See tests/bench/conftest.py.

1. tick cost vs idle plans: 100 due plans among 100 / 10,000 / 100,000 plans in total.
2. fan-out: a tick with 10,000 due plans vs enqueueing 10,000 no-op tasks the same way.
3. throughput: 2,000 approved PREP_RENEWAL_BRIEF plans (internal connector) on one worker
   (concurrency 2) vs a flood of as many no-op tasks on the same worker; queries/commits per step;
   and the floor of the shape: the same messages, each one transaction that locks the plan and
   writes one row, with no rule in it (tests/bench/noop.py).
4. latency: one step's finish to the next step's start on chained 2-step plans.
"""
import os
import re
import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import claims, engine, step_runner, tasks
from orchestrator.execution.models import ActionIntent, IntentStatus
from plans.models import Account, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.services import approvals
from plans.waits import refresh_all
from tests.bench.conftest import check_targets, median, record, scaled, target, wait_worker_ready
from tests.bench.db_work import DbWork
from tests.bench.measure import STATS_SETTLE_SECONDS, StepLog
from tests.bench.noop import COUNTER, CREATE_SKELETON_TABLE, SKELETON_TABLE, noop, skeleton_advance
from tests.conftest import build_world
from tests.factories import allow_autopilot
from tests.integration.harness import wait_for

BRIEF = "PREP_RENEWAL_BRIEF"
REPS = 15
THROUGHPUT_SECONDS = float(os.environ.get("BENCH_THROUGHPUT_SECONDS", "240"))

# --- bulk loading ----------------------------------------------------------------------------------

_INSERT_ACCOUNTS = """
INSERT INTO plans_account (id, tenant_id, name, external_id, owner_id, renewal_date, posture, created_at, updated_at)
SELECT md5('bench-acct-' || n)::uuid, %(tenant)s, 'Bench account ' || n, 'bench-' || n, %(owner)s,
       (now() + interval '90 days')::date, '{}'::jsonb, now(), now()
FROM generate_series(%(first)s, %(last)s) AS n
"""
# Idle: 40% COMPLETED, 20% ACTIVE waiting for a future next_run_at, 10% ACTIVE waiting for people
# (next_run_at NULL), 30% DRAFT. Due: ACTIVE, next_run_at a minute ago. One account per plan.
_INSERT_PLANS = """
INSERT INTO plans_revenueplan (
    id, tenant_id, account_id, plan_type, plan_type_version, objective, plan_status, constraints, owner_id,
    risk_level, expires_at, created_at, updated_at, approved_at, approved_by_id, activated_at, paused_at,
    completed_at, aborted_at, expired_at, completion_reason, stop_reason_code, stop_reason_detail, next_run_at,
    created_by, version, approval_record, edited_by_since_approval)
SELECT md5('bench-plan-' || n)::uuid, %(tenant)s, md5('bench-acct-' || n)::uuid, 'RENEWAL_DEFENSE', 1,
       'Secure renewal before day -30', status, '{"no_external_contact_without_approval": true}'::jsonb, %(owner)s,
       'LOW', now() + interval '30 days', now() - interval '2 days', now() - interval '1 day',
       CASE WHEN status <> 'DRAFT' THEN now() - interval '2 days' END,
       CASE WHEN status <> 'DRAFT' THEN %(approver)s END,
       CASE WHEN status IN ('ACTIVE', 'COMPLETED') THEN now() - interval '2 days' END, NULL,
       CASE WHEN status = 'COMPLETED' THEN now() - interval '1 day' END, NULL, NULL,
       CASE WHEN status = 'COMPLETED' THEN 'all_steps_done' ELSE '' END, '', '',
       CASE WHEN %(due)s THEN now() - interval '1 minute'
            WHEN n %% 10 IN (4, 5) THEN now() + interval '1 day' + n * interval '1 second' END,
       'system:bench', 1, '{}'::jsonb, '[]'::jsonb
FROM (
    SELECT n, CASE WHEN %(due)s THEN 'ACTIVE' WHEN n %% 10 < 4 THEN 'COMPLETED' WHEN n %% 10 < 7 THEN 'ACTIVE'
                   ELSE 'DRAFT' END AS status
    FROM generate_series(%(first)s, %(last)s) AS n
) AS rows
"""
IDLE_FIRST = 10_000_000  # idle plans are numbered from here, due ones from 1


def load_plans(world, *, first: int, count: int, due: bool) -> None:
    if count <= 0:
        return
    params = {"tenant": world.tenant.id, "owner": world.seller.id, "approver": world.admin.id, "due": due,
              "first": first, "last": first + count - 1}
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_ACCOUNTS, params)
        cursor.execute(_INSERT_PLANS, params)
    # The inbox rows of the loaded DRAFTs, as the beat would have built them long before (plans.waits): not a
    # cost of the steps measured after.
    refresh_all()


def analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def make_due(plan_ids) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE plans_revenueplan SET next_run_at = now() - interval '1 minute' WHERE id = ANY(%s)",
                       [list(plan_ids)])


def claim_plan_text() -> list[str]:
    params = {"now": timezone.now(), "guard": timezone.now(), "batch": 10_000}
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + claims._CLAIM_DUE, params)
        return [row[0] for row in cursor.fetchall()]


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


# --- 1 + 2: tick cost and fan-out --------------------------------------------------------------


@pytest.mark.timeout(900)
def test_tick_cost_vs_idle_plans_and_fan_out(bench_cluster):
    world = build_world()
    app = tasks.tick.app
    broker = bench_cluster.redis_client()
    due = 100
    levels = [100, scaled(10_000, minimum=1_000), scaled(100_000, minimum=10_000)]
    load_plans(world, first=1, count=due, due=True)
    due_ids = [uuid.UUID(str(pk)) for pk in RevenuePlan.objects.filter(next_run_at__lte=timezone.now())
               .values_list("id", flat=True)]
    assert len(due_ids) == due
    loaded, per_level = due, []
    for total in levels:
        load_plans(world, first=IDLE_FIRST + loaded, count=total - loaded, due=False)
        loaded = total
        analyze()
        assert RevenuePlan.objects.count() == total
        # Query counts on a warm-up run (capturing adds a little overhead, so the timed runs go without).
        make_due(due_ids)
        with CaptureQueriesContext(connection) as selection_queries:
            assert len(claims.due_plan_ids()) == due
        make_due(due_ids)
        broker.flushdb()
        with CaptureQueriesContext(connection) as tick_queries:
            assert tasks.tick() == due
        assert broker.llen("advance") == len(claims.advance_batches(due_ids))  # a message per batch of plans
        selection_times, tick_times = [], []
        for _ in range(REPS):
            make_due(due_ids)
            seconds, claimed = timed(claims.due_plan_ids)
            assert len(claimed) == due
            selection_times.append(seconds)
            make_due(due_ids)
            broker.flushdb()
            seconds, enqueued = timed(tasks.tick)
            assert enqueued == due
            tick_times.append(seconds)
        per_level.append({"total_plans": total, "due": due, "selection_queries": len(selection_queries),
                          "tick_queries": len(tick_queries), "selection_ms": median(selection_times) * 1000,
                          "tick_ms": median(tick_times) * 1000, "claim_plan": claim_plan_text()})
    for level in per_level:
        record("1_tick_cost", **{
            f"{level['total_plans']:>7} plans: selection queries / tick queries":
                f"{level['selection_queries']} / {level['tick_queries']}",
            f"{level['total_plans']:>7} plans: due_plan_ids median ms": level["selection_ms"],
            f"{level['total_plans']:>7} plans: tick (claim + enqueue 100) median ms": level["tick_ms"],
        })
    first, last = per_level[0], per_level[-1]
    record("1_tick_cost", levels=per_level, reps=REPS,
           selection_growth=last["selection_ms"] / first["selection_ms"],
           tick_growth=last["tick_ms"] / first["tick_ms"])
    same_queries = len({(lv["selection_queries"], lv["tick_queries"]) for lv in per_level}) == 1
    target("tick: same query count at every size", float(same_queries), 1, op=">=")
    target(f"tick: due_plan_ids time {first['total_plans']} -> {last['total_plans']} plans",
           last["selection_ms"] / first["selection_ms"], 1.5, op="<=", unit="x")
    target(f"tick: whole tick time {first['total_plans']} -> {last['total_plans']} plans",
           last["tick_ms"] / first["tick_ms"], 1.5, op="<=", unit="x")
    assert same_queries, per_level

    # --- 2: fan-out of 10,000 due plans (among the largest population above) ---------------------
    fan_out = scaled(10_000, minimum=1_000)
    others = list(RevenuePlan.objects.filter(plan_status=PlanStatus.ACTIVE, next_run_at__gt=timezone.now())
                  .exclude(id__in=due_ids).order_by("id").values_list("id", flat=True)[: fan_out - due])
    fan_ids = due_ids + others
    assert len(fan_ids) == fan_out
    payload = str(uuid.uuid4())
    claim_times = []
    real_due_plan_ids = claims.due_plan_ids

    def timed_due_plan_ids(**kwargs):
        seconds, value = timed(lambda: real_due_plan_ids(**kwargs))
        claim_times.append(seconds)
        return value

    def bare_enqueue():
        now = time.time()
        with app.producer_or_acquire() as producer:
            for _ in range(fan_out):
                noop.apply_async((payload,), {"enqueued_at": now}, producer=producer)

    tick_times, bare_times = [], []
    with mock.patch.object(claims, "due_plan_ids", timed_due_plan_ids):
        for rep in range(4):  # the first is a warm-up; tick and bare take turns going first
            runs = [("tick", tasks.tick), ("bare", bare_enqueue)]
            for name, run in runs if rep % 2 else reversed(runs):
                make_due(fan_ids)
                broker.flushdb()
                seconds, value = timed(run)
                if name == "tick":
                    assert value == fan_out
                    assert broker.llen("advance") == len(claims.advance_batches(fan_ids))
                    tick_times.append(seconds)
                else:
                    assert broker.llen("default") == fan_out
                    bare_times.append(seconds)
    tick_s, bare_s, claim_s = median(tick_times[1:]), median(bare_times[1:]), median(claim_times[1:])
    record("2_fan_out", due_plans=fan_out, tick_total_s=tick_s, tick_claim_s=claim_s, tick_enqueue_s=tick_s - claim_s,
           bare_enqueue_s=bare_s, tick_msgs_per_s=fan_out / tick_s, bare_msgs_per_s=fan_out / bare_s,
           ratio_tick_to_bare=tick_s / bare_s, ratio_enqueue_only=(tick_s - claim_s) / bare_s,
           tick_runs_s=tick_times, bare_runs_s=bare_times)
    target(f"fan-out: tick of {fan_out} / bare enqueue of {fan_out}", tick_s / bare_s, 1.5, op="<=", unit="x")
    check_targets([t for t in [
        f"tick: due_plan_ids time {first['total_plans']} -> {last['total_plans']} plans",
        f"tick: whole tick time {first['total_plans']} -> {last['total_plans']} plans",
        f"fan-out: tick of {fan_out} / bare enqueue of {fan_out}",
    ]])


# --- 3 + 4: throughput and latency on a real worker -------------------------------------------------


def make_brief_plans(world, count: int, *, steps_of) -> list[uuid.UUID]:
    """APPROVED plans (one account each) whose steps are chained PREP_RENEWAL_BRIEFs (internal connector);
    the tenant lets the brief run on its own with a budget no run reaches (the issue: "without step approval")."""
    allow_autopilot(world.tenant, BRIEF, max_per_day=10**9, max_per_account_per_day=10**9)
    now = timezone.now()
    tag = uuid.uuid4().hex[:8]
    accounts = Account.objects.bulk_create([
        Account(tenant=world.tenant, name=f"Bench {tag} {i}", external_id=f"bench-{tag}-{i}", owner=world.seller,
                renewal_date=timezone.localdate() + timedelta(days=90))
        for i in range(count)
    ])
    plans = RevenuePlan.objects.bulk_create([
        RevenuePlan(tenant=world.tenant, account=account, plan_type="RENEWAL_DEFENSE", objective="Secure renewal",
                    plan_status=PlanStatus.APPROVED, constraints={"no_external_contact_without_approval": True},
                    owner=world.seller, risk_level="LOW", expires_at=now + timedelta(days=30),
                    created_at=now - timedelta(minutes=5), updated_at=now - timedelta(minutes=5),
                    approved_at=now - timedelta(minutes=1), approved_by=world.admin, next_run_at=None,
                    created_by="system:bench")
        for account in accounts
    ])
    steps = []
    for index, plan in enumerate(plans):
        previous = None
        for sequence in range(steps_of(index)):
            step = PlanStep(plan=plan, sequence=sequence, action_type=BRIEF, status=StepStatus.PENDING, required=True,
                            risk_level="LOW", depends_on=[str(previous)] if previous else [])
            steps.append(step)
            previous = step.step_id
    PlanStep.objects.bulk_create(steps)
    # What plan_approve records (the digest of the content, the facts), so each step attempt's gate
    # compares them as it would for a real approval.
    steps_of_plan: dict = {}
    for step in steps:
        steps_of_plan.setdefault(step.plan_id, []).append(step)
    for plan, account in zip(plans, accounts, strict=True):
        plan.account = account
        plan.approval_record = approvals.plan_record(plan, steps_of_plan[plan.id], approved_by_id=world.admin.pk,
                                                     approved_at=plan.approved_at)
    RevenuePlan.objects.bulk_update(plans, ["approval_record"])
    return [plan.id for plan in plans]


def db_stats() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, "
                       "tup_deleted, blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()")
        names = [column[0] for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


def table_stats() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT relname, seq_scan, seq_tup_read, COALESCE(idx_scan, 0), COALESCE(idx_tup_fetch, 0), "
                       "n_tup_ins, n_tup_upd FROM pg_stat_user_tables")
        return {row[0]: dict(zip(("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "ins", "upd"), row[1:],
                                 strict=True)) for row in cursor.fetchall()}


def per_table_per_step(before: dict, after: dict, steps: int) -> dict:
    out = {}
    for name, row in after.items():
        delta = {key: round((value - before.get(name, {}).get(key, 0)) / steps, 2) for key, value in row.items()}
        if any(delta.values()):
            out[name] = delta
    return out


def stats_delta(before: dict, after: dict) -> dict:
    return {key: after[key] - before[key] for key in before}


def run_task(task: str, item, send) -> dict:
    """One orchestrator task's work, as orchestrator.tasks does it: the advance of a batch of plans (`item`: their
    ids, as the tick groups them: claims.advance_batches) or one step (`item`: its key), then the steps each
    claimed for itself (run_inline), the others handed to `send`; returns what is left to send, by plan id."""
    if task == "advance":
        follow_ups = engine.advance_many(list(item), inline=True)
    else:
        follow_ups = {item.plan_id: step_runner.execute_step(item, inline=True)}
    return {plan_id: step_runner.run_inline(follow_up, send=send) for plan_id, follow_up in follow_ups.items()}


def follow_up_tasks(sent: list, follow_ups: dict) -> list[tuple]:
    """The tasks a task's work sends on: a message per step it did not run, an advance where it asks for one."""
    tasks_sent = [("execute", key) for key in sent]
    for plan_id, follow_up in follow_ups.items():
        tasks_sent += [("execute", key) for key in follow_up.keys]
        if follow_up.advance:
            tasks_sent.append(("advance", [plan_id]))
    return tasks_sent


def run_in_process(plan_ids) -> dict:
    """Drive plans to completion with the engine's own functions in this process, task by task (run_task; the
    advances batched as the tick batches them), counting per task type: an advance's inline steps count as the
    advance's, as in the worker."""
    work = DbWork(("advance", "execute"))
    with work.counting():
        pending = [("advance", batch) for batch in claims.advance_batches(list(plan_ids))]
        while pending:
            task, item = pending.pop()
            sent: list = []
            pending += follow_up_tasks(sent, work.run(task, run_task, task, item, sent.extend))
    assert RevenuePlan.objects.filter(id__in=plan_ids, plan_status=PlanStatus.COMPLETED).count() == len(plan_ids)
    steps = ActionIntent.objects.filter(plan_id__in=plan_ids, status=IntentStatus.SUCCEEDED).count()
    return {"steps": steps, **work.counts}


def step_latencies(plan_ids) -> dict:
    """Per 2-step plan: step 1's finished_at -> step 2's intent created_at -> step 2's started_at (ms)."""
    sequence = dict(PlanStep.objects.filter(plan_id__in=plan_ids).values_list("step_id", "sequence"))
    by_plan: dict = {}
    for intent in ActionIntent.objects.filter(plan_id__in=plan_ids, status=IntentStatus.SUCCEEDED):
        by_plan.setdefault(intent.plan_id, {})[sequence[intent.step_id]] = intent
    gaps, to_created, to_started = [], [], []
    for intents in by_plan.values():
        if 0 in intents and 1 in intents:
            first, second = intents[0], intents[1]
            gaps.append((second.started_at - first.finished_at).total_seconds() * 1000)
            to_created.append((second.created_at - first.finished_at).total_seconds() * 1000)
            to_started.append((second.started_at - second.created_at).total_seconds() * 1000)
    if not gaps:
        return {}
    gaps.sort()
    return {"plans": len(gaps), "median_ms": median(gaps), "p90_ms": gaps[int(0.9 * (len(gaps) - 1))],
            "finish_to_next_intent_created_median_ms": median(to_created),
            "next_intent_created_to_started_median_ms": median(to_started)}


def task_counts(log_text: str) -> dict:
    counts: dict = {}
    for name in re.findall(r"Task ([\w.]+)\[[^\]]+\] succeeded", log_text):
        counts[name] = counts.get(name, 0) + 1
    return counts


def wait_until(predicate, *, timeout: float, interval: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.timeout(900)
def test_throughput_and_latency(bench_cluster):
    world = build_world()
    app = tasks.tick.app
    broker = bench_cluster.redis_client()
    plan_count = scaled(2000, minimum=20)
    throughput_ids = make_brief_plans(world, plan_count, steps_of=lambda i: 1 + i % 2)
    steps_total = PlanStep.objects.filter(plan_id__in=throughput_ids).count()
    latency_ids = make_brief_plans(world, 20, steps_of=lambda i: 2)
    sample_ids = make_brief_plans(world, 10, steps_of=lambda i: 2)

    # Queries and transactions per step, counted in this process on the same engine code the worker runs.
    before = db_stats()
    sample = run_in_process(sample_ids)
    time.sleep(1.5)  # our backend reports its stats when idle
    sample_db = stats_delta(before, db_stats())
    # Statistics as a running system has them: on empty execution tables the planner may look up
    # InternalRecord by tenant alone (then filter), which turns each step into a scan of the tenant's records.
    analyze()
    steps = sample["steps"]
    transactions = sample["advance"]["transactions"] + sample["execute"]["transactions"]
    record("3_per_step_in_process", sample_plans=len(sample_ids), sample_steps=steps,
           advance_calls_per_step=sample["advance"]["calls"] / steps,
           queries_per_step_advance=sample["advance"]["queries"] / steps,
           queries_per_step_execute=sample["execute"]["queries"] / steps,
           queries_per_step_total=(sample["advance"]["queries"] + sample["execute"]["queries"]) / steps,
           transactions_per_step_counted=transactions / steps,
           xact_commit_per_step_pg_stat=sample_db["xact_commit"] / steps,
           tup_inserted_per_step=sample_db["tup_inserted"] / steps,
           tup_updated_per_step=sample_db["tup_updated"] / steps)

    worker = bench_cluster.start_worker(concurrency=2)
    banner = wait_worker_ready(worker)
    assert "bench.noop" in banner, "the worker did not register tests.bench.noop"
    assert "bench.skeleton_execute" in banner, "the worker did not register the floor's tasks"
    beat = bench_cluster.start_beat()
    # The beat's start-up (Django, the schedule) takes a core for a second or two: not during the baseline.
    wait_for(lambda: b"Sending due task" in beat.log_path.read_bytes(), timeout=60, what="the beat's first tick")
    time.sleep(1)

    # Bare baseline: as many no-op tasks as the governed run has steps, same producer approach, same worker.
    broker.delete(COUNTER)
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(steps_total):
            noop.apply_async((str(uuid.uuid4()),), {"enqueued_at": time.time(), "count": True}, producer=producer)
    wait_until(lambda: int(broker.get(COUNTER) or 0) >= steps_total, timeout=300, interval=0.05,
               what="the no-op tasks")
    bare_s = time.perf_counter() - started

    # Governed: make them all due; the beat's tick (every second) fans them out. The end is seen in the
    # worker's log, so no query of ours lands in the per-step counts but the two reads of them.
    steps_log = StepLog(worker.log_path)
    steps_log.poll()  # the baseline ran no step
    time.sleep(STATS_SETTLE_SECONDS)  # the worker's backends have sent the baseline's statistics
    stats_before, tables_before = db_stats(), table_stats()
    released = time.perf_counter()
    RevenuePlan.objects.filter(id__in=throughput_ids).update(next_run_at=timezone.now())
    completed = RevenuePlan.objects.filter(id__in=throughput_ids, plan_status=PlanStatus.COMPLETED)
    # Bounded (BENCH_THROUGHPUT_SECONDS): on a loaded machine the rate over what finished is reported.
    steps_log.wait_for(steps_log.count + steps_total, timeout=THROUGHPUT_SECONDS)
    wall_s = time.perf_counter() - released
    time.sleep(STATS_SETTLE_SECONDS)  # and an idle backend sends its last ones 10 s later
    delta = stats_delta(stats_before, db_stats())
    tables_after = table_stats()
    # Ours in the window: the release above (one commit, plan_count rows fetched by primary key and updated).
    delta["xact_commit"] -= 1
    delta["tup_fetched"] -= plan_count
    delta["tup_updated"] -= plan_count
    all_done = completed.count() == plan_count
    if not all_done:
        broker.flushdb()  # drop the backlog so the latency run below is not queued behind it
        time.sleep(3)
    first_activation = min(a for a in RevenuePlan.objects.filter(id__in=throughput_ids)
                           .values_list("activated_at", flat=True) if a)
    succeeded = ActionIntent.objects.filter(plan_id__in=throughput_ids, status=IntentStatus.SUCCEEDED)
    executed = succeeded.count()
    assert executed > 0
    tables = per_table_per_step(tables_before, tables_after, executed)
    last_finish = max(succeeded.values_list("finished_at", flat=True))
    governed_s = (last_finish - first_activation).total_seconds()
    if all_done:
        assert executed == steps_total
    log_counts = task_counts(worker.log_path.read_text(errors="replace"))
    governed_rate, bare_rate = executed / governed_s, steps_total / bare_s
    record("3_throughput", plans=plan_count, steps=steps_total, all_plans_completed=all_done,
           steps_executed_in_window=executed, governed_seconds=governed_s,
           governed_wall_seconds_from_release=wall_s, governed_steps_per_s=governed_rate,
           bare_noop_tasks=steps_total, bare_seconds=bare_s, bare_tasks_per_s=bare_rate,
           ratio_governed_to_bare=governed_rate / bare_rate,
           **{f"tasks_per_step_{name.split('.')[-1]}": count / executed for name, count in log_counts.items()
              if name != "bench.noop"},
           xact_commit_per_step=delta["xact_commit"] / executed,
           xact_rollback_per_step=delta["xact_rollback"] / executed,
           tup_inserted_per_step=delta["tup_inserted"] / executed,
           tup_updated_per_step=delta["tup_updated"] / executed,
           tup_fetched_per_step=delta["tup_fetched"] / executed,
           pg_stat_delta=delta, task_counts=log_counts, per_table_per_step=tables,
           loaded_step_latency=step_latencies(throughput_ids))
    target("throughput: governed steps/s / bare no-op tasks/s", governed_rate / bare_rate, 0.25, op=">=")

    # The floor: the same plans, messages and worker, each message one transaction (lock the plan, write
    # a row) and no rule at all. What it leaves of the bare rate is what any governed step could reach.
    with connection.cursor() as cursor:
        cursor.execute(CREATE_SKELETON_TABLE)
        cursor.execute(f"TRUNCATE {SKELETON_TABLE}")
    with app.producer_or_acquire() as producer:
        for index, plan_id in enumerate(throughput_ids):
            skeleton_advance.apply_async((str(plan_id), 1 + index % 2), producer=producer)

    def floor_rows(condition=""):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*), min(done_at), max(done_at) FROM {SKELETON_TABLE} {condition}")
            return cursor.fetchone()

    wait_until(lambda: floor_rows()[0] >= plan_count + steps_total, timeout=300, interval=0.1,
               what="the floor's messages")
    _, first, last = floor_rows()
    floor_steps = floor_rows("WHERE step > 0")[0]
    floor_s = (last - first).total_seconds()
    floor_rate = floor_steps / floor_s
    record("3_floor", steps=floor_steps, seconds=floor_s, steps_per_s=floor_rate,
           ratio_floor_to_bare=floor_rate / bare_rate, ratio_governed_to_floor=governed_rate / floor_rate)

    # Latency under light load: one chained 2-step plan at a time, started by an advance message.
    for plan_id in latency_ids:
        tasks.advance_plan.apply_async((str(plan_id),), {"enqueued_at": time.time()})
        wait_until(lambda pid=plan_id: RevenuePlan.objects.filter(pk=pid, plan_status=PlanStatus.COMPLETED).exists(),
                   timeout=60, interval=0.05, what="a latency plan to complete")
    latency = step_latencies(latency_ids)
    record("4_latency", **latency)
    target("latency: step finished -> next step started (median)", latency["median_ms"], 50, op="<", unit="ms")
    check_targets(["throughput: governed steps/s / bare no-op tasks/s",
                   "latency: step finished -> next step started (median)"])
