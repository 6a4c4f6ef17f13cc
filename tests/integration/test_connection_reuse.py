"""A worker reuses its database connection from task to task (issue 16's first measurement): Celery's Django
fixup used to close it before and after every task, so every tick, advance and step began a new PostgreSQL
backend. Counted with pg_stat_database.sessions of the test database while real workers run real plans."""
import time

import pytest
from django.db import connection

from plans.models import PlanStatus, RevenuePlan
from tests.conftest import build_world
from tests.integration.harness import wait_for
from tests.integration.test_plan_runs import BRIEF, chained_plan

PLANS = 15


def sessions_opened() -> int:
    """Connections ever made to this database (the statistics are flushed about once a second)."""
    time.sleep(1.5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


@pytest.fixture
def cluster_env():
    return {"DATABASE_CONN_MAX_AGE": "600"}  # no connection ages out while the test runs


@pytest.mark.timeout(120)
def test_a_worker_keeps_its_connection_across_ticks_advances_and_steps(cluster):
    cluster.start_worker(concurrency=2)
    cluster.start_beat()
    world = build_world()
    wait_for(lambda: sessions_opened() >= 2, timeout=30, what="the worker's processes to connect")
    time.sleep(3)  # a few ticks: each process that will take tasks has connected once
    before = sessions_opened()

    plans = [chained_plan(build_world() if index else world, BRIEF, BRIEF) for index in range(PLANS)]
    wait_for(lambda: RevenuePlan.objects.filter(pk__in=[plan.pk for plan in plans],
                                                plan_status=PlanStatus.COMPLETED).count() == PLANS,
             timeout=90, what="every plan to complete")
    opened = sessions_opened() - before

    steps = PLANS * 2
    # Before the fix: one backend per task (ticks, advances and steps: well over `steps`). Now the worker's
    # processes and beat's keep theirs; a process that had not taken a task yet may still connect once.
    assert opened <= 3, f"{opened} connections opened for {steps} steps"
