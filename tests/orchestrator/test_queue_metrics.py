"""`revplan_queue_length{queue}` on /metrics: each Celery queue's length in the broker at scrape time
(priority lists included), and a broker that does not answer leaves the lengths out and says so."""
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client

from orchestrator import queue_metrics


@pytest.fixture
def private_queues(settings):
    """Queue names of this test's own on the shared Redis (no worker listens to them); deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = f"{prefix}-default"
    settings.CELERY_TASK_ROUTES = {"orchestrator.tick": {"queue": f"{prefix}-ticks"},
                                   "orchestrator.execute_step": {"queue": f"{prefix}-execute"}}
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    yield prefix, client
    client.delete(*[name for queue in queue_metrics.celery_queues() for name in queue_metrics._list_names(queue)])


def sample(text: str, queue: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(f'revplan_queue_length{{queue="{queue}"}}'))
    return float(line.split()[-1])


def test_metrics_show_each_queues_length_at_scrape_time(private_queues):
    prefix, client = private_queues
    client.rpush(f"{prefix}-execute", "m1", "m2", "m3")
    client.rpush(f"{prefix}-execute\x06\x163", "high-priority")  # a message sent with a priority: its own list
    client.rpush(f"{prefix}-ticks", "t1")

    text = Client().get("/metrics").content.decode()

    assert sample(text, f"{prefix}-execute") == 4
    assert sample(text, f"{prefix}-ticks") == 1
    assert sample(text, f"{prefix}-default") == 0
    assert "revplan_broker_up 1.0" in text
    # and it is read afresh: a consumed message is gone from the next scrape
    client.lpop(f"{prefix}-ticks")
    assert sample(Client().get("/metrics").content.decode(), f"{prefix}-ticks") == 0


def test_a_broker_that_does_not_answer_leaves_the_lengths_out_and_metrics_still_answer(private_queues, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = Client().get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert "revplan_broker_up 0.0" in text
    assert 'revplan_queue_length{queue="' not in text
    assert "revplan_ticks_total" in text
