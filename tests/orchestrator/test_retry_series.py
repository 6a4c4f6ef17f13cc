"""The retry limit counts the attempts of the current series; a person's retry starts a new one; and
the stall rule: an ACTIVE plan with a FAILED step is paused with a RETRY_LIMIT layer, never left silent."""
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator import engine, outcomes
from orchestrator.blocked_by import blocked_by_for
from orchestrator.execution.models import ActionIntent, FailureClass, IntentStatus
from orchestrator.execution.service import intent_create
from plans import services
from plans.models import EventType, PauseKind, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.plan_types import get_plan_type_config
from plans.services.layers import open_layers
from plans.why import plan_why
from tests.factories import allow_autopilot, make_plan
from tests.orchestrator.test_engine import approved_plan, run_until_quiet

BRIEF, ESCALATE = "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"
RETRY_LIMIT = get_plan_type_config("RENEWAL_DEFENSE").retry_limit


@pytest.fixture(autouse=True)
def quick_orchestrator(settings, world):
    settings.ORCHESTRATOR_STEP_RETRY_BASE_SECONDS = 0
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    allow_autopilot(world.tenant, BRIEF)


def events(plan, event_type) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(plan=plan, event_type=event_type).order_by("chain_seq"))


def escalation_failing_at_the_limit(world, crm, crm_for):
    """An approved escalation that the CRM refuses (400: every attempt fails at once) RETRY_LIMIT times."""
    crm_for(world.tenant)
    crm.state.scripted = [400] * RETRY_LIMIT
    plan = approved_plan(world, BRIEF, ESCALATE)
    run_until_quiet(plan.id)
    escalate = plan.steps.get(action_type=ESCALATE)
    services.step_approve(plan_id=plan.id, step_id=escalate.step_id, user=world.admin)
    run_until_quiet(plan.id)
    plan.refresh_from_db()
    escalate.refresh_from_db()
    assert (plan.plan_status, escalate.status, escalate.attempts) == (PlanStatus.PAUSED, StepStatus.FAILED, RETRY_LIMIT)
    return plan, escalate


def test_a_retry_runs_a_new_series_numbered_after_the_old_one_and_the_plan_completes(world, crm, crm_for):
    # given: PAUSED [RETRY_LIMIT]; the CRM works again
    plan, escalate = escalation_failing_at_the_limit(world, crm, crm_for)
    assert crm.state.scripted == []
    # when
    services.step_retry(plan_id=plan.id, step_id=escalate.step_id, user=world.seller)
    run_until_quiet(plan.id)
    # then: one more attempt, numbered after the old ones, on the step's approval; the plan completes
    plan.refresh_from_db()
    escalate.refresh_from_db()
    assert (plan.plan_status, plan.completion_reason) == (PlanStatus.COMPLETED, "all_steps_done")
    assert (escalate.status, escalate.attempts, escalate.attempts_before_series) == (
        StepStatus.DONE, RETRY_LIMIT + 1, RETRY_LIMIT)
    assert escalate.last_error == ""
    intents = ActionIntent.objects.filter(plan=plan, step_id=escalate.step_id).order_by("attempt")
    assert [(intent.attempt, intent.status) for intent in intents] == [
        *[(n, IntentStatus.FAILED) for n in range(1, RETRY_LIMIT + 1)], (RETRY_LIMIT + 1, IntentStatus.SUCCEEDED)]
    assert intents.last().approved_by_id == world.admin.pk
    started = [entry.data["attempt"] for entry in events(plan, EventType.STEP_ATTEMPT_STARTED)
               if entry.step_id == escalate.step_id]
    assert started == list(range(1, RETRY_LIMIT + 2))
    assert len(events(plan, EventType.STEP_RETRIED)) == 1
    # the old series' failed attempt was not applied a second time
    assert len(events(plan, EventType.STEP_RETRY_SCHEDULED)) == RETRY_LIMIT - 1


def test_the_limit_counts_the_new_series_not_every_attempt_ever(world, crm, crm_for):
    # given: PAUSED [RETRY_LIMIT]; the CRM keeps refusing
    plan, escalate = escalation_failing_at_the_limit(world, crm, crm_for)
    crm.state.scripted = [400] * (RETRY_LIMIT + 5)
    # when
    services.step_retry(plan_id=plan.id, step_id=escalate.step_id, user=world.seller)
    run_until_quiet(plan.id)
    # then: a whole new series (not one attempt, not none), then PAUSED [RETRY_LIMIT] again
    plan.refresh_from_db()
    escalate.refresh_from_db()
    assert (escalate.status, escalate.attempts, escalate.attempts_in_series) == (
        StepStatus.FAILED, 2 * RETRY_LIMIT, RETRY_LIMIT)
    assert plan.plan_status == PlanStatus.PAUSED
    assert [(layer.kind, layer.scope) for layer in open_layers(plan)] == [
        (PauseKind.RETRY_LIMIT, str(escalate.step_id))]
    assert len(events(plan, EventType.STEP_RETRY_SCHEDULED)) == 2 * (RETRY_LIMIT - 1)
    paused = events(plan, EventType.PAUSE_LAYER_ADDED)[-1]
    assert paused.data["layer"]["evidence"]["attempts"] == 2 * RETRY_LIMIT
    assert paused.data["layer"]["evidence"]["attempts_in_series"] == RETRY_LIMIT
    assert f"failed {RETRY_LIMIT} times in a row" in paused.explanation


def _failed_attempt(plan, step, attempt: int):
    intent = intent_create(tenant_id=plan.tenant_id, account_id=plan.account_id, action_type=step.action_type,
                           expires_at=plan.expires_at, approving_policy="test", plan_id=plan.id,
                           step_id=step.step_id, attempt=attempt)
    ActionIntent.objects.filter(pk=intent.pk).update(status=IntentStatus.FAILED, failure_class=FailureClass.TRANSIENT,
                                                     failure_reason="503", finished_at=timezone.now())
    return ActionIntent.objects.get(pk=intent.pk)


def test_the_backoff_restarts_with_the_series(world, settings):
    # given: the first attempt of a second series failed (attempts 1-3 were the first series)
    settings.ORCHESTRATOR_STEP_RETRY_BASE_SECONDS = 10
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    step = plan.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(attempts=4, attempts_before_series=3)
    step.refresh_from_db()
    intent = _failed_attempt(plan, step, 4)
    now = timezone.now()
    # when
    assert engine.apply_outcome(plan, step, intent, get_plan_type_config(plan.plan_type), now=now)
    # then: the base delay (10 s), as after a series' first failure, not 2**3 x base
    step.refresh_from_db()
    assert step.status == StepStatus.PENDING
    assert step.next_attempt_at == now + timedelta(seconds=10)
    [scheduled] = events(plan, EventType.STEP_RETRY_SCHEDULED)
    assert scheduled.data["attempt"] == 4


def test_a_retried_steps_old_failed_attempt_is_not_applied_again(world):
    # given: a person retried the step; its last attempt (the old series') failed
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    step = plan.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(attempts=3, attempts_before_series=3)
    step.refresh_from_db()
    intent = _failed_attempt(plan, step, 3)
    # when / then
    assert engine.apply_outcome(plan, step, intent, get_plan_type_config(plan.plan_type), now=timezone.now()) is False
    assert engine.advance_plan(plan.id) == [engine.StepKey(plan.id, step.step_id, 4)]
    assert events(plan, EventType.STEP_RETRY_SCHEDULED) == []


@pytest.mark.parametrize("action_types", [(BRIEF,), (BRIEF, ESCALATE)], ids=["required", "optional"])
def test_an_active_plan_with_a_failed_step_is_paused_with_a_retry_limit_layer_not_left_silent(world, action_types):
    # given: an ACTIVE plan whose step FAILED, nothing queued, no layer (made with factories)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=action_types)
    failed = plan.steps.get(action_type=action_types[-1])
    PlanStep.objects.filter(pk=failed.pk).update(status=StepStatus.FAILED, attempts=3, last_error="PERMANENT: 400")
    if len(action_types) > 1:
        PlanStep.objects.filter(plan=plan, action_type=BRIEF).update(status=StepStatus.AUTO_EXECUTED)
    plan = RevenuePlan.objects.prefetch_related("steps").get(pk=plan.pk)
    # then: before the advance, why and blocked_by already say what holds it
    assert [answer.code for answer in plan_why(plan, now=timezone.now()).waiting] == ["STEP_FAILED"]
    [item] = blocked_by_for([plan], now=timezone.now())[plan.id]
    assert (item["code"], item["step_id"], item["verb"]) == ("STEP_FAILED", failed.step_id, "retry_step")
    # when
    assert engine.advance_plan(plan.id) == []
    # then: PAUSED, held by the step's RETRY_LIMIT layer, ledgered
    plan = RevenuePlan.objects.prefetch_related("steps").get(pk=plan.pk)
    assert plan.plan_status == PlanStatus.PAUSED
    [layer] = open_layers(plan)
    assert (layer.kind, layer.scope, layer.reason_code) == (PauseKind.RETRY_LIMIT, str(failed.step_id), "STEP_FAILED")
    assert "PERMANENT: 400" in layer.explanation
    assert [entry.event_type for entry in PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq")] == [
        EventType.PLAN_PAUSED, EventType.PAUSE_LAYER_ADDED]
    [item] = blocked_by_for([plan], now=timezone.now())[plan.id]
    assert (item["code"], item["layer"]["kind"], item["step_id"], item["verb"]) == (
        "RETRY_LIMIT", "RETRY_LIMIT", failed.step_id, "retry_step")
    # and a retry lets it run on
    services.step_retry(plan_id=plan.id, step_id=failed.step_id, user=world.seller)
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ACTIVE
    keys = engine.advance_plan(plan.id)
    if failed.action_type == ESCALATE:  # HIGH risk, and the factory gave it no approval: a person approves
        assert (keys, PlanStep.objects.get(pk=failed.pk).status) == ([], StepStatus.PENDING_APPROVAL)
        services.step_approve(plan_id=plan.id, step_id=failed.step_id, user=world.admin)
        keys = engine.advance_plan(plan.id)
    assert [key.attempt for key in keys] == [4]


def test_abort_right_after_a_retry_closes_the_waiting_step(world):
    # given: a retried step (no attempt of its new series out)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    step = plan.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.FAILED, attempts=3)
    services.step_retry(plan_id=plan.id, step_id=step.step_id, user=world.seller)
    # when
    services.plan_abort(plan_id=plan.id, user=world.seller, reason="deal lost")
    # then: the step waited for nothing that happens in the world: it is closed with the plan
    step.refresh_from_db()
    assert (step.status, step.closed_with_plan) == (StepStatus.SKIPPED, True)


def test_a_failure_on_a_version_this_deploy_lacks_waits_for_a_worker_that_has_it(world):
    # A rolling deploy: the plan was approved on a plan-type version this (older) worker does not know.
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,), plan_type_version=99)
    step = plan.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(attempts=1)
    failed = _failed_attempt(plan, step, 1)

    assert outcomes.record_step_outcome(failed.id) == engine.FollowUp()  # no crash, nothing applied

    step.refresh_from_db()
    assert (step.status, step.next_attempt_at, step.last_error) == (StepStatus.PENDING, None, "")
    assert not events(plan, EventType.STEP_RETRY_SCHEDULED)
