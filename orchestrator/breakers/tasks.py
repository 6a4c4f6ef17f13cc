"""Celery task of the breakers (thin): the sweep, on beat (settings: REVPLAN_BREAKER_SWEEP_SECONDS)."""
import logging

from celery import shared_task
from django.conf import settings

from orchestrator.breakers.sweep import sweep
from orchestrator.locks import held_lock

logger = logging.getLogger(__name__)


@shared_task(name="orchestrator.breakers_sweep", ignore_result=True)
def breakers_sweep() -> dict:
    # One sweep at a time (two beats, a slow run overtaken by the next): two could each choose a probe.
    with held_lock("breakers-sweep", ttl_seconds=max(30.0, 3 * settings.REVPLAN_BREAKER_SWEEP_SECONDS)) as acquired:
        if not acquired:
            return {}
        result = sweep()
    if any(result.values()):
        logger.info("breakers sweep", extra=result)
    return result
