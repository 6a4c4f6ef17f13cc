"""Prometheus metrics for ticks, advances, step outcomes, queue lag and queue lengths.

Web, workers and beat are separate processes: with PROMETHEUS_MULTIPROC_DIR set (the Makefile
and docker compose set it), each writes its samples there and /metrics adds them up.
"""
import os

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from orchestrator import queue_metrics

TICKS = Counter("revplan_ticks_total", "Orchestrator ticks run")
TICK_DUE_PLANS = Counter("revplan_tick_due_plans_total", "Plans a tick found needing attention")
TICK_SECONDS = Histogram("revplan_tick_seconds", "Time a tick took, selection and enqueueing")
ADVANCES = Counter("revplan_advances_total", "Plan advances", ["result"])
STEP_OUTCOMES = Counter("revplan_step_outcomes_total", "Step attempts finished", ["action_type", "outcome"])
QUEUE_LAG = Histogram(
    "revplan_queue_lag_seconds", "Time from enqueue to a worker starting the task", ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def render() -> bytes:
    # The queue lengths are read from the broker at each scrape (orchestrator.queue_metrics), not counted here.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry) + queue_metrics.render()
    return generate_latest(DEFAULT_REGISTRY) + queue_metrics.render()
