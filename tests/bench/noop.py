"""The bare-Celery baseline: a task that does nothing (optionally counts itself in the private Redis).

Workers load it with `--include tests.bench.noop`; the benchmark checks the worker registered it.
"""
from celery import shared_task
from django.db import connection, transaction

from orchestrator.locks import redis_client

COUNTER = "bench:noop:done"


@shared_task(name="bench.noop", ignore_result=True)
def noop(*args, count: bool = False, **kwargs) -> None:
    if count:
        redis_client().incr(COUNTER)


# --- the floor of the governed shape -------------------------------------------------------------
# What any step of a governed plan costs at the least in this design (DESIGN §4), with no rule in it:
# one advance message per plan and one execute message per step, each a transaction that locks the
# plan's row and writes one row, then sends the next message. The throughput benchmark runs it on the
# same worker to show how much of the bare rate the shape alone leaves.

SKELETON_TABLE = "bench_skeleton_effect"
CREATE_SKELETON_TABLE = f"""
CREATE TABLE IF NOT EXISTS {SKELETON_TABLE} (
    id bigserial PRIMARY KEY, plan_id uuid NOT NULL, step integer NOT NULL, done_at timestamptz NOT NULL
)"""


def _lock_plan_and_write(plan_id: str, step: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT id FROM plans_revenueplan WHERE id = %s FOR UPDATE", [plan_id])
        cursor.execute(f"INSERT INTO {SKELETON_TABLE} (plan_id, step, done_at) VALUES (%s, %s, clock_timestamp())",
                       [plan_id, step])


@shared_task(name="bench.skeleton_advance", ignore_result=True)
def skeleton_advance(plan_id: str, steps: int) -> None:
    _lock_plan_and_write(plan_id, 0)
    skeleton_execute.delay(plan_id, 1, steps)


@shared_task(name="bench.skeleton_execute", ignore_result=True)
def skeleton_execute(plan_id: str, step: int, steps: int) -> None:
    _lock_plan_and_write(plan_id, step)
    if step < steps:
        skeleton_execute.delay(plan_id, step + 1, steps)
