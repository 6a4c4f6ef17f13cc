"""Named Redis locks that only save wasted work; correctness rests on the database's keys and leases.

A lock is taken without waiting (held elsewhere → the caller skips), released only by its owner
(redis-py's token check), and expires on its own if its worker dies. When Redis is down the
caller proceeds unlocked: the database still refuses a second execution.
"""
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import redis
from django.conf import settings
from redis.exceptions import LockError, RedisError

logger = logging.getLogger(__name__)


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


@contextmanager
def held_lock(name: str, *, ttl_seconds: float) -> Iterator[bool]:
    lock = redis_client().lock(f"revplan:lock:{name}", timeout=ttl_seconds, blocking=False)
    try:
        acquired = lock.acquire(blocking=False)
    except RedisError as error:
        logger.warning("redis lock unavailable; going on without it", extra={"lock": name, "error": str(error)})
        yield True
        return
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except (LockError, RedisError) as error:
                # Expired and maybe taken by another worker: not ours to delete any more.
                logger.warning("redis lock not released", extra={"lock": name, "error": str(error)})


def plan_lock(plan_id) -> Iterator[bool]:
    return held_lock(f"plan:{plan_id}", ttl_seconds=settings.ORCHESTRATOR_PLAN_LOCK_SECONDS)


def step_lock(plan_id, step_id, attempt) -> Iterator[bool]:
    return held_lock(f"step:{plan_id}:{step_id}:{attempt}", ttl_seconds=settings.REVPLAN_EXECUTION_LEASE_SECONDS)
