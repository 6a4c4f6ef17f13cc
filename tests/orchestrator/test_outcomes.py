"""orchestrator.outcomes: an outcome recorded and the plan advanced on from it in one transaction with no
savepoint; should the advance fail, the outcome is recorded alone and an advance message asked for."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import engine, outcomes, step_runner
from orchestrator.execution.models import ActionIntent, IntentStatus
from plans.models import EventType, PlanLedgerEntry, RevenuePlan, StepStatus
from tests.orchestrator.test_engine import (
    BRIEF,
    approved_plan,
    brief_runs_on_its_own,  # noqa: F401 - autouse: the brief runs on its own
    decisions_fail_for,
    step_statuses,
)

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)  # our transactions are the outermost: only a nested one is a savepoint
def test_a_chained_step_runs_without_a_savepoint(world):
    plan = approved_plan(world, BRIEF, BRIEF)
    follow_up = engine.advance(plan.id, inline=True)
    with CaptureQueriesContext(connection) as queries:
        follow_up = step_runner.run_claimed(follow_up.inline, inline=True)
    assert follow_up.inline is not None  # the second step, claimed by this worker
    assert not [query["sql"] for query in queries if "SAVEPOINT" in query["sql"]]


def test_a_failing_advance_after_a_recorded_message_keeps_the_outcome(world, settings, monkeypatch):
    # given: the first attempt finished, its outcome not recorded yet (a duplicate message records it)
    plan = approved_plan(world, BRIEF, BRIEF)
    first, second = plan.steps.order_by("sequence")
    engine.advance_plan(plan.id)
    intent = ActionIntent.objects.get(plan=plan, step_id=first.step_id)
    ActionIntent.objects.filter(pk=intent.pk).update(status=IntentStatus.SUCCEEDED, finished_at=timezone.now())
    decisions_fail_for(monkeypatch, lambda plan, step: step.step_id == second.step_id)
    started = timezone.now()

    follow_up = outcomes.record_step_outcome(intent.id, inline=True)

    assert follow_up == engine.FollowUp(advance=True)
    assert step_statuses(plan) == [(BRIEF, StepStatus.AUTO_EXECUTED), (BRIEF, StepStatus.PENDING)]
    assert not ActionIntent.objects.filter(step_id=second.step_id).exists()
    assert not PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STEP_ATTEMPT_STARTED,
                                              step_id=second.step_id).exists()
    next_run_at = RevenuePlan.objects.get(pk=plan.id).next_run_at
    assert next_run_at >= started + timedelta(seconds=settings.ORCHESTRATOR_REDELIVERY_SECONDS)
    assert outcomes.record_step_outcome(intent.id) == engine.FollowUp()  # applied once: a duplicate does nothing
