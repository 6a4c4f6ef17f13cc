"""A stuck plan through real processes: beat runs the detector, which re-drives an ACTIVE plan whose
next_run_at was lost, and the tick and a worker then run its step to completion — one STUCK_DETECTED."""
from datetime import timedelta

import pytest
from django.utils import timezone

from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan
from tests.conftest import build_world
from tests.factories import allow_autopilot, make_plan
from tests.integration.harness import wait_for


@pytest.fixture
def cluster_env():
    return {"REVPLAN_STUCK_AFTER_SECONDS": "60", "REVPLAN_STUCK_CHECK_SECONDS": "1"}


@pytest.mark.timeout(120)
def test_beat_finds_a_plan_whose_next_run_at_was_lost_and_the_tick_then_runs_it(cluster):
    world = build_world()
    allow_autopilot(world.tenant, "PREP_RENEWAL_BRIEF")
    quiet_since = timezone.now() - timedelta(hours=1)
    # given an ACTIVE plan with a runnable step that no tick looks at (next_run_at lost an hour ago)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=("PREP_RENEWAL_BRIEF",),
                     activated_at=quiet_since, updated_at=quiet_since, next_run_at=None)
    cluster.start_worker(concurrency=2)
    cluster.start_beat()
    # then the detector re-drives it, the tick advances it and the step runs on its own: it completes
    wait_for(lambda: RevenuePlan.objects.get(pk=plan.pk).plan_status == PlanStatus.COMPLETED, timeout=60,
             what="the stuck plan to be re-driven and complete")
    [entry] = PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STUCK_DETECTED)
    assert entry.data["redriven"] is True
    assert entry.data["last_seen"]["next_run_at"] is None
    # and later runs of the detector (every second) flag it no more
    wait_for(lambda: "orchestrator.stuck_plans" in cluster.logs() and cluster.logs().count(
        "Task orchestrator.stuck_plans") >= 4, timeout=20, what="a few more detector runs")
    assert PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STUCK_DETECTED).count() == 1
