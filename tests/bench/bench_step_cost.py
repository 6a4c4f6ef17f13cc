"""In-process per-step cost of a governed plan step (`make bench`, or just this one:
`pytest tests/bench -o python_files='bench_*.py' -s -k step_cost`).

N approved 2-step PREP_RENEWAL_BRIEF plans (internal connector, no approval needed) driven to completion
with the engine's own functions, in this process, no broker: a FIFO of tasks like a worker's queue (as
orchestrator.tasks runs them: a task runs the step it claimed, an advance's first or a step's next, and sends
the others; the advances batched as the tick batches them: claims.advance_batches), and every TICK_EVERY tasks a
tick (due_plan_ids + an advance per batch of the plans it claims), as the beat would under load. Reported per step:
wall ms, queries, transactions (autocommit statements + committed atomic blocks), advances.
Printed only (not added to var/bench/orchestrator.json, which a run of this test alone would overwrite).
"""
import os
from collections import deque

import pytest

from orchestrator import claims
from orchestrator.execution.models import ActionIntent, IntentStatus
from plans.models import PlanStatus, RevenuePlan
from tests.bench.bench_orchestrator import follow_up_tasks, make_brief_plans, run_task
from tests.bench.db_work import DbWork
from tests.conftest import build_world

PLANS = int(os.environ.get("BENCH_STEP_COST_PLANS", "50"))
TICK_EVERY = 20


def drive(plan_ids) -> dict:
    work = DbWork(("advance", "execute", "tick"))
    queue = deque(("advance", batch) for batch in claims.advance_batches(list(plan_ids)))
    tasks_run = 0
    with work.counting():
        while queue:
            kind, arg = queue.popleft()
            sent: list = []
            queue.extend(follow_up_tasks(sent, work.run(kind, run_task, kind, arg, sent.extend)))
            tasks_run += 1
            if tasks_run % TICK_EVERY == 0 or not queue:
                due = work.run("tick", claims.due_plan_ids)
                queue.extend(("advance", batch) for batch in claims.advance_batches(due))
    done = RevenuePlan.objects.filter(id__in=plan_ids, plan_status=PlanStatus.COMPLETED).count()
    assert done == len(plan_ids), f"{done} of {len(plan_ids)} plans completed"
    steps = ActionIntent.objects.filter(plan_id__in=plan_ids, status=IntentStatus.SUCCEEDED).count()
    return {"steps": steps, **work.counts}


@pytest.mark.timeout(600)
def test_step_cost(transactional_db):
    world = build_world()
    drive(make_brief_plans(world, 5, steps_of=lambda i: 2))  # warm-up: imports, caches, plans
    result = drive(make_brief_plans(world, PLANS, steps_of=lambda i: 2))
    steps = result["steps"]
    assert steps == 2 * PLANS
    kinds = ("advance", "execute", "tick")
    total = {key: sum(result[kind][key] for kind in kinds) for key in ("queries", "transactions", "seconds")}
    summary = {
        "plans / steps": f"{PLANS} / {steps}",
        "ms per step (all tasks)": total["seconds"] * 1000 / steps,
        "queries per step": total["queries"] / steps,
        "transactions per step": total["transactions"] / steps,
        "advance calls per step": result["advance"]["calls"] / steps,
        "ticks": result["tick"]["calls"],
    }
    for kind in kinds:
        row = result[kind]
        summary[f"{kind}: ms / queries / transactions per step"] = (
            f"{row['seconds'] * 1000 / steps:.2f} / {row['queries'] / steps:.2f} / {row['transactions'] / steps:.2f}"
        )
    for key, value in summary.items():
        print(f"{key:<48} {value:.4g}" if isinstance(value, float) else f"{key:<48} {value}")
