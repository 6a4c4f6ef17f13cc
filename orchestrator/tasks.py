"""Celery tasks (thin): take ids, call orchestrator.engine, enqueue what it says after it committed."""
import logging
import time
from contextlib import ExitStack
from uuid import UUID

from celery import shared_task
from django.conf import settings

from orchestrator import claims, engine, metrics, step_runner
from orchestrator.autonomy import digest, review, triggers
from orchestrator.locks import plan_lock, step_lock

logger = logging.getLogger(__name__)


def _lag(task: str, enqueued_at: float | None) -> None:
    if enqueued_at:
        metrics.QUEUE_LAG.labels(task).observe(max(0.0, time.time() - enqueued_at))


@shared_task(name="orchestrator.tick", ignore_result=True)
def tick(enqueued_at: float | None = None) -> int:
    """Fan out the plans that need attention, a batch of them per advance_plans (beat runs this every few seconds)."""
    _lag("tick", enqueued_at)
    started = time.monotonic()
    plan_ids = claims.due_plan_ids()
    now = time.time()
    # One producer for the whole fan-out: a connection per message would dominate the tick.
    with advance_plans.app.producer_or_acquire() as producer:
        for batch in claims.advance_batches(plan_ids):
            advance_plans.apply_async(([str(plan_id) for plan_id in batch],), {"enqueued_at": now}, producer=producer)
    metrics.TICKS.inc()
    metrics.TICK_DUE_PLANS.inc(len(plan_ids))
    metrics.TICK_SECONDS.observe(time.monotonic() - started)
    if plan_ids:
        logger.info("tick", extra={"due_plans": len(plan_ids)})
    return len(plan_ids)


@shared_task(name="orchestrator.advance_plans", ignore_result=True, bind=True)
def advance_plans(self, plan_ids: list[str], enqueued_at: float | None = None) -> None:
    _lag("advance_plan", enqueued_at)  # one queue, one lag: alerts and dashboards know it by this name
    _advance(self, plan_ids, lock_retries=0)


@shared_task(name="orchestrator.advance_plan", ignore_result=True, bind=True)
def advance_plan(self, plan_id: str, enqueued_at: float | None = None, lock_retries: int = 0) -> None:
    _lag("advance_plan", enqueued_at)
    _advance(self, [plan_id], lock_retries=lock_retries)


def _advance(task, plan_ids: list[str], *, lock_retries: int) -> None:
    started = time.monotonic()
    # The first step each advance starts this task runs itself, after the plans' locks are released, and the
    # chain after it within the inline budget — a message per plan less (DESIGN §4); the others go to the
    # execute queue.
    inline = runs_steps(soft_time_limit=task.request.soft_time_limit, time_limit=task.request.time_limit)
    with ExitStack() as locks:
        locked = []
        for plan_id in plan_ids:
            if locks.enter_context(plan_lock(plan_id)):
                locked.append(UUID(plan_id))
                continue
            # Another advance is on this plan; look again shortly so a finished step does not wait a tick.
            if lock_retries < settings.ORCHESTRATOR_ADVANCE_LOCK_RETRIES:
                advance_plan.apply_async((plan_id,), {"enqueued_at": time.time(), "lock_retries": lock_retries + 1},
                                         countdown=settings.ORCHESTRATOR_ADVANCE_LOCK_RETRY_SECONDS)
            metrics.ADVANCES.labels("locked").inc()
        follow_ups = engine.advance_many(locked, inline=inline) if locked else {}
    for plan_id in locked:
        follow_up = follow_ups.get(plan_id, engine.FollowUp())
        metrics.ADVANCES.labels("steps_enqueued" if follow_up.keys or follow_up.inline else "nothing_to_run").inc()
        follow_up = step_runner.run_inline(follow_up, send=_send_steps, started=started)
        _send_steps(follow_up.keys)
        if follow_up.advance:
            advance_plan.apply_async((str(plan_id),), {"enqueued_at": time.time()})


def runs_steps(*, soft_time_limit: float | None, time_limit: float | None) -> bool:
    """Whether an advance runs the steps it starts: ORCHESTRATOR_ADVANCE_RUNS_STEPS (off where the advance
    queue's workers must never wait on a connector), and only under time limits that cover a step task's.
    The limits a message carries are its sender's (Celery puts the sender's annotations in its headers): an
    advance sent by a process whose settings keep advances short — an older release during a deploy — sends
    its steps rather than have a connector call cut off by the bookkeeping limit. None: this worker's own."""
    if not settings.ORCHESTRATOR_ADVANCE_RUNS_STEPS:
        return False
    limit = soft_time_limit or time_limit
    return limit is None or limit >= settings.CELERY_TASK_ANNOTATIONS["orchestrator.execute_step"]["soft_time_limit"]


@shared_task(name="orchestrator.execute_step", ignore_result=True)
def execute_step(plan_id: str, step_id: str, attempt: int, enqueued_at: float | None = None) -> None:
    _lag("execute_step", enqueued_at)
    started = time.monotonic()
    key = engine.StepKey(UUID(plan_id), UUID(step_id), int(attempt))
    with step_lock(plan_id, step_id, attempt) as acquired:
        if not acquired:
            return  # another worker is on this attempt right now; the database would refuse us anyway
        follow_up = step_runner.execute_step(key, inline=True)
    # The steps claimed for this worker, within the inline budget from the task's start; then what else started.
    follow_up = step_runner.run_inline(follow_up, send=_send_steps, started=started)
    _send_steps(follow_up.keys)
    if follow_up.advance:
        advance_plan.apply_async((plan_id,), {"enqueued_at": time.time()})


def _send_steps(keys: list[engine.StepKey]) -> None:
    now = time.time()
    for key in keys:
        execute_step.apply_async((str(key.plan_id), str(key.step_id), key.attempt), {"enqueued_at": now})


@shared_task(name="orchestrator.proposal_triggers", ignore_result=True, acks_late=True)
def proposal_triggers() -> None:
    for slug, result in triggers.run_all_tenants().items():
        logger.info("proposal triggers", extra={"tenant": slug, **vars(result)})


@shared_task(name="orchestrator.autonomy_digest", ignore_result=True, acks_late=True)
def autonomy_digest() -> int:
    return digest.digest_all_tenants()


@shared_task(name="orchestrator.autonomy_review", ignore_result=True, acks_late=True)
def autonomy_review() -> None:
    for tenant_id, result in review.review_all_tenants().items():
        logger.info("autonomy reviewed", extra={"tenant_id": tenant_id, **vars(result)})
