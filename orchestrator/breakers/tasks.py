"""Celery task of the breakers (thin): the sweep, on beat (settings: REVPLAN_BREAKER_SWEEP_SECONDS)."""
import logging

from celery import shared_task

from orchestrator.breakers.sweep import sweep

logger = logging.getLogger(__name__)


@shared_task(name="orchestrator.breakers_sweep", ignore_result=True)
def breakers_sweep() -> dict:
    result = sweep()
    if any(result.values()):
        logger.info("breakers sweep", extra=result)
    return result
