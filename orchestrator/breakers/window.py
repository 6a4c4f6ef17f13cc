"""The breakers' hot state in Redis: the sliding window of tries, the cached state, the probe slot.

The window is counted in buckets (config.BUCKETS per window), one small hash {t: tries, f: transient
failures} per bucket that expires once the window has passed it: a try costs one pipelined round trip
whatever the traffic, and memory stays at BUCKETS keys per (tenant, connector). A sorted set of every
try would be exact to the millisecond but grow with throughput (300,000 members at 1,000 tries/s).

The state is cached for the gate before every step (one GET); the row in PostgreSQL is the record, so
a cache miss (expiry, a restarted Redis) reads it again. Redis down: the gate lets steps through and
nothing is counted (the state is read from its row, so a breaker forced open stays open) — the
connector's own errors and the retry limit still apply; a breaker must not become an outage of its own.
"""
import logging
from contextlib import suppress
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from redis.exceptions import RedisError

from orchestrator.breakers.config import BreakerConfig
from orchestrator.locks import redis_client

logger = logging.getLogger(__name__)

PREFIX = "revplan:breaker"
# A cached state is read from the database again after this long, so a missed invalidation heals itself.
STATE_CACHE_SECONDS = 30


@dataclass(frozen=True)
class Counts:
    tries: int
    failures: int

    def as_dict(self) -> dict:
        return {"tries": self.tries, "failures": self.failures}


def _base(tenant_id: UUID, connector: str) -> str:
    return f"{PREFIX}:{tenant_id}:{connector}"


def state_key(tenant_id: UUID, connector: str) -> str:
    return f"{_base(tenant_id, connector)}:state"


def probe_key(tenant_id: UUID, connector: str) -> str:
    return f"{_base(tenant_id, connector)}:probe"


def _bucket_keys(tenant_id: UUID, connector: str, config: BreakerConfig, now: float) -> list[str]:
    """The buckets of the window ending at `now`, newest first."""
    current = int(now // config.bucket_seconds)
    count = max(1, config.window_seconds // config.bucket_seconds)
    base = _base(tenant_id, connector)
    return [f"{base}:w:{bucket}" for bucket in range(current, current - count, -1)]


def count_try(tenant_id: UUID, connector: str, config: BreakerConfig, *, failed: bool, now: float,
              read: bool) -> tuple[Counts | None, str | None]:
    """Count one try; with `read`, also the window's counts and the cached state, in the same round trip.
    (None, None) when Redis does not answer."""
    keys = _bucket_keys(tenant_id, connector, config, now)
    pipe = redis_client().pipeline(transaction=False)
    pipe.hincrby(keys[0], "t", 1)
    if failed:
        pipe.hincrby(keys[0], "f", 1)
    pipe.expire(keys[0], config.window_seconds + 2 * config.bucket_seconds)
    if read:
        for key in keys:
            pipe.hmget(key, "t", "f")
        pipe.get(state_key(tenant_id, connector))
    try:
        replies = pipe.execute()
    except RedisError as error:
        logger.warning("breaker window unavailable; try not counted", extra={"connector": connector,
                                                                            "error": str(error)})
        return None, None
    if not read:
        return None, None
    *buckets, cached = replies[-(len(keys) + 1):]
    tries = sum(int(t or 0) for t, _ in buckets)
    failures = sum(int(f or 0) for _, f in buckets)
    return Counts(tries, failures), cached.decode() if cached else None


def window_counts(tenant_id: UUID, connector: str, config: BreakerConfig, *, now: float) -> Counts | None:
    pipe = redis_client().pipeline(transaction=False)
    for key in _bucket_keys(tenant_id, connector, config, now):
        pipe.hmget(key, "t", "f")
    try:
        buckets = pipe.execute()
    except RedisError:
        return None
    return Counts(sum(int(t or 0) for t, _ in buckets), sum(int(f or 0) for _, f in buckets))


def clear_window(tenant_id: UUID, connector: str, config: BreakerConfig, *, now: float) -> None:
    """Forget the window's tries: a breaker that closes starts counting afresh (the outage's failures
    would otherwise re-open it at the first failure)."""
    try:
        redis_client().delete(*_bucket_keys(tenant_id, connector, config, now))
    except RedisError as error:
        logger.warning("breaker window not cleared", extra={"connector": connector, "error": str(error)})


def cached_state(tenant_id: UUID, connector: str) -> str | None:
    try:
        value = redis_client().get(state_key(tenant_id, connector))
    except RedisError as error:
        logger.warning("breaker state cache unavailable", extra={"connector": connector, "error": str(error)})
        raise
    return value.decode() if value else None


def cache_state(tenant_id: UUID, connector: str, state: str) -> None:
    with suppress(RedisError):  # the next gate reads the row again
        redis_client().set(state_key(tenant_id, connector), state, ex=STATE_CACHE_SECONDS)


def forget_state(tenant_id: UUID, connector: str) -> None:
    try:
        redis_client().delete(state_key(tenant_id, connector))
    except RedisError as error:
        logger.warning("breaker state cache not cleared; it expires within %s s", STATE_CACHE_SECONDS,
                       extra={"connector": connector, "error": str(error)})


def probe_ttl_seconds() -> float:
    """How long a probe may take to report: its plan's resume, the tick that advances it, a message's
    redelivery and the attempt's lease. A probe that outlives it is lost; the sweep chooses another."""
    return (settings.REVPLAN_EXECUTION_LEASE_SECONDS + settings.ORCHESTRATOR_REDELIVERY_SECONDS
            + 2 * settings.ORCHESTRATOR_TICK_SECONDS)


def claim_probe(tenant_id: UUID, connector: str, holder: str) -> bool:
    """Is `holder` the probe? It is when the slot names it, or when the slot is free and it takes it."""
    client = redis_client()
    key = probe_key(tenant_id, connector)
    try:
        if client.set(key, holder, nx=True, ex=int(probe_ttl_seconds()) + 1):
            return True
        current = client.get(key)
    except RedisError:
        return False
    return current is not None and current.decode() == holder


def set_probe(tenant_id: UUID, connector: str, holder: str) -> None:
    try:
        if holder:
            redis_client().set(probe_key(tenant_id, connector), holder, ex=int(probe_ttl_seconds()) + 1)
        else:
            redis_client().delete(probe_key(tenant_id, connector))
    except RedisError as error:
        logger.warning("breaker probe slot not set", extra={"connector": connector, "error": str(error)})


def probe_holder(tenant_id: UUID, connector: str) -> str | None:
    try:
        value = redis_client().get(probe_key(tenant_id, connector))
    except RedisError:
        return None
    return value.decode() if value else None
