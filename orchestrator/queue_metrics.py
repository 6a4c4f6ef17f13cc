"""`revplan_queue_length{queue}`: how many messages wait in each Celery queue, read from the broker (Redis)
when /metrics is scraped, so the number is the broker's own at that moment and no process has to keep it.

The queues are the ones the settings route tasks to (CELERY_TASK_ROUTES, CELERY_TASK_DEFAULT_QUEUE). Kombu's
Redis transport keeps a queue as a list under its name, and a message sent with a priority in a list of its
own per priority step (the name, "\\x06\\x16", the step): the length is their sum. One pipelined round trip per
scrape. When the broker does not answer within a second, the lengths are left out (a scrape never fails for
it) and `revplan_broker_up` is 0: the alert rules page on that rather than on a made-up zero.
"""
import logging

import redis
from django.conf import settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

# Kombu's defaults (kombu.transport.redis): PRIORITY_STEPS and the separator of a priority's list name.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEPARATOR = "\x06\x16"
BROKER_TIMEOUT_SECONDS = 1.0


def celery_queues() -> list[str]:
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values() if "queue" in route}
    return sorted(routed | {settings.CELERY_TASK_DEFAULT_QUEUE})


def _list_names(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def queue_lengths() -> dict[str, int] | None:
    """{queue: messages waiting}, or None when the broker cannot be read."""
    queues = celery_queues()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=BROKER_TIMEOUT_SECONDS,
                                  socket_connect_timeout=BROKER_TIMEOUT_SECONDS)
    try:
        pipeline = client.pipeline(transaction=False)
        for queue in queues:
            for name in _list_names(queue):
                pipeline.llen(name)
        lengths = pipeline.execute()
    except redis.RedisError as error:
        logger.warning("queue lengths unavailable", extra={"error": str(error)})
        return None
    finally:
        client.close()
    steps = len(PRIORITY_STEPS)
    return {queue: sum(lengths[index * steps:(index + 1) * steps]) for index, queue in enumerate(queues)}


class QueueLengthCollector:
    """Read at collect time (each scrape), never cached."""

    def describe(self):
        # Registering calls this: it must not reach the broker (an import would wait for Redis).
        return [GaugeMetricFamily("revplan_queue_length", "Messages waiting in each Celery queue", labels=["queue"]),
                GaugeMetricFamily("revplan_broker_up", "1 when the Celery broker answered this scrape, else 0")]

    def collect(self):
        lengths = queue_lengths()
        length = GaugeMetricFamily("revplan_queue_length", "Messages waiting in each Celery queue", labels=["queue"])
        for queue, waiting in sorted((lengths or {}).items()):
            length.add_metric([queue], waiting)
        up = GaugeMetricFamily("revplan_broker_up", "1 when the Celery broker answered this scrape, else 0")
        up.add_metric([], 0 if lengths is None else 1)
        return [length, up]


# A registry of its own: the multiprocess collector adds up the processes' files, which these are not.
REGISTRY = CollectorRegistry()
REGISTRY.register(QueueLengthCollector())


def render() -> bytes:
    return generate_latest(REGISTRY)
