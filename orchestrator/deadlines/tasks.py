"""Celery tasks (thin) for the deadline job and the stuck-plan detector; beat runs both
(settings.CELERY_BEAT_SCHEDULE), the worker imports this module through CELERY_IMPORTS."""
import logging

from celery import shared_task

from orchestrator.deadlines import service, stuck

logger = logging.getLogger(__name__)


# Safe to run twice or at once: each stage and each stuck episode is a row inserted once.
@shared_task(name="orchestrator.deadlines", ignore_result=True, acks_late=True)
def deadlines() -> dict:
    result = service.deadlines_run()
    return {"waiting": result.waiting, "overdue": result.overdue, **result.done}


@shared_task(name="orchestrator.stuck_plans", ignore_result=True, acks_late=True)
def stuck_plans() -> int:
    return len(stuck.stuck_plans_detect())
