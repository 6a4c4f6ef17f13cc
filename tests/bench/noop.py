"""The bare-Celery baseline: a task that does nothing (optionally counts itself in the private Redis).

Workers load it with `--include tests.bench.noop`; the benchmark checks the worker registered it.
"""
from celery import shared_task

from orchestrator.locks import redis_client

COUNTER = "bench:noop:done"


@shared_task(name="bench.noop", ignore_result=True)
def noop(*args, count: bool = False, **kwargs) -> None:
    if count:
        redis_client().incr(COUNTER)
