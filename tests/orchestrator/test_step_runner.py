"""orchestrator/step_runner.py: the next step in the same task, and what stops it after the commit that
created it claimed (a person's abort or pause, a kill switch) or once the task's budget is spent."""
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from orchestrator import engine, step_runner
from orchestrator.execution.models import ActionIntent, IntentStatus, InternalRecord
from plans import services
from plans.models import EventType, PauseKind, PauseLayer, PlanLedgerEntry, PlanStatus, RevenuePlan
from plans.services.kill_switches import kill_switch_set
from tests.bench.bench_orchestrator import make_brief_plans


def chained_plan(world):
    [plan_id] = make_brief_plans(world, 1, steps_of=lambda i: 2)
    [first] = engine.advance_plan(plan_id)
    follow_up = step_runner.execute_step(first, inline=True)  # the first step ran; the second is claimed
    assert follow_up.inline is not None
    assert ActionIntent.objects.get(pk=follow_up.inline.intent.pk).status == IntentStatus.EXECUTING
    return plan_id, follow_up


def second_intent(follow_up) -> ActionIntent:
    return ActionIntent.objects.get(pk=follow_up.inline.intent.pk)


def test_the_claimed_next_step_runs_in_the_same_call(world):
    plan_id, follow_up = chained_plan(world)
    sent = []
    assert step_runner.run_inline(follow_up, send=sent.extend) == engine.FollowUp()
    assert sent == []
    assert RevenuePlan.objects.get(pk=plan_id).plan_status == PlanStatus.COMPLETED
    assert second_intent(follow_up).status == IntentStatus.SUCCEEDED
    assert InternalRecord.objects.filter(tenant=world.tenant).count() == 2


def test_a_kill_switch_engaged_after_the_commit_stops_the_claimed_step(world):
    plan_id, follow_up = chained_plan(world)
    kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="stop", action_type="")

    step_runner.run_inline(follow_up, send=lambda keys: None)

    intent = second_intent(follow_up)
    assert intent.status == IntentStatus.PENDING  # handed back, nothing sent
    assert intent.attempts == 0
    assert InternalRecord.objects.filter(tenant=world.tenant).count() == 1
    assert PlanLedgerEntry.objects.filter(plan_id=plan_id, event_type=EventType.ACTION_BLOCKED).count() == 1
    assert RevenuePlan.objects.get(pk=plan_id).plan_status == PlanStatus.PAUSED
    assert PauseLayer.objects.filter(plan_id=plan_id, kind=PauseKind.KILL_SWITCH, lifted_at__isnull=True).exists()


def test_an_abort_after_the_commit_cancels_the_claimed_step(world):
    plan_id, follow_up = chained_plan(world)
    services.plan_abort(plan_id=plan_id, user=world.admin, reason="the customer renewed by phone")

    step_runner.run_inline(follow_up, send=lambda keys: None)

    assert second_intent(follow_up).status == IntentStatus.CANCELLED
    assert InternalRecord.objects.filter(tenant=world.tenant).count() == 1
    assert not PlanLedgerEntry.objects.filter(plan_id=plan_id, event_type=EventType.ACTION_EXECUTED,
                                              step_id=second_intent(follow_up).step_id).exists()


def test_a_pause_after_the_commit_hands_the_claimed_step_back_for_after_the_resume(world):
    plan_id, follow_up = chained_plan(world)
    services.plan_pause(plan_id=plan_id, user=world.admin, reason="wait for the QBR")

    step_runner.run_inline(follow_up, send=lambda keys: None)

    assert second_intent(follow_up).status == IntentStatus.PENDING
    assert InternalRecord.objects.filter(tenant=world.tenant).count() == 1


@pytest.mark.parametrize("budget", [{"max_steps": 0}, {"seconds": 0}])
def test_past_the_budget_the_claimed_step_goes_out_by_message(world, budget):
    plan_id, follow_up = chained_plan(world)
    sent = []

    left = step_runner.run_inline(follow_up, send=sent.extend, **budget)

    assert left == engine.FollowUp(keys=[follow_up.inline.key])  # for the task to send
    intent = second_intent(follow_up)
    assert (intent.status, intent.attempts, intent.lease_token) == (IntentStatus.PENDING, 0, None)
    assert InternalRecord.objects.filter(tenant=world.tenant).count() == 1
    # The message's worker then runs it as any other.
    step_runner.execute_step(follow_up.inline.key)
    assert RevenuePlan.objects.get(pk=plan_id).plan_status == PlanStatus.COMPLETED


@pytest.mark.parametrize("set_before", [timedelta(0), timedelta(seconds=-5)])
def test_a_chain_rewrites_its_wake_up_only_once_it_is_a_second_off(world, set_before):
    # Each advance that starts a step sets the plan's wake-up (the tick's safety net) ORCHESTRATOR_REDELIVERY_SECONDS
    # ahead; the one a moment before stands (the tick may look a moment early and find nothing), a stale one does not.
    [plan_id] = make_brief_plans(world, 1, steps_of=lambda i: 2)
    [first] = engine.advance_plan(plan_id)
    before = RevenuePlan.objects.get(pk=plan_id).next_run_at + set_before
    RevenuePlan.objects.filter(pk=plan_id).update(next_run_at=before)
    started = timezone.now()
    follow_up = step_runner.execute_step(first, inline=True)  # the first step's outcome starts the second
    assert follow_up.inline is not None
    after = RevenuePlan.objects.get(pk=plan_id).next_run_at
    if set_before:
        assert after >= started + timedelta(seconds=settings.ORCHESTRATOR_REDELIVERY_SECONDS)
    else:
        assert after == before
