"""The orchestrator's rules, called in-process (the real-worker runs are in tests/integration)."""
import dataclasses
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY

from orchestrator import claims, engine, step_runner
from orchestrator.execution.models import ActionIntent, IntentStatus
from plans import selectors, services
from plans.errors import Conflict
from plans.models import (
    EventType,
    KillSwitch,
    PauseKind,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    StepStatus,
)
from plans.schemas import PlanDraftInput, StepInput
from plans.services.layers import open_layers
from tests.factories import AccountFactory, allow_autopilot, make_plan

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


@pytest.fixture(autouse=True)
def quick_orchestrator(settings):
    settings.ORCHESTRATOR_STEP_RETRY_BASE_SECONDS = 0
    # The stand-in CRM and Radicale listen on 127.0.0.1, which the SSRF guard refuses for a tenant's
    # endpoint unless allow-listed (as tests/orchestrator/execution/conftest.py does for its tests).
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1"]


@pytest.fixture(autouse=True)
def brief_runs_on_its_own(request):
    """The tenant lets the (LOW-risk, internal) brief run on its own; the autonomy tests set their own."""
    if "world" in request.fixturenames:
        allow_autopilot(request.getfixturevalue("world").tenant, BRIEF)


def approved_plan(world, *steps_with_deps, account=None):
    """steps_with_deps: action types; each depends on the one before it. For world.account unless
    `account` (one account has one approved or active plan of a type at a time)."""
    inputs, previous = [], None
    for action_type in steps_with_deps:
        step = StepInput(step_id=__import__("uuid").uuid4(), action_type=action_type,
                         depends_on=[previous] if previous else [])
        inputs.append(step)
        previous = step.step_id
    plan = services.plan_propose(account_id=(account or world.account).id, plan_type="RENEWAL_DEFENSE",
                                 draft=PlanDraftInput(steps=inputs), actor=world.seller)
    return services.plan_approve(plan_id=plan.id, user=world.admin)


def run_until_quiet(plan_id, *, keys=(), limit=50):
    """What the workers do: advance (unless given the attempts to run), execute every attempt started,
    and the attempts each execution starts in turn; an advance where the task would send one."""
    pending = list(keys) or engine.advance_plan(plan_id)
    for _ in range(limit):
        if not pending:
            return
        follow_up = step_runner.execute_step(pending.pop(0))
        pending += follow_up.keys
        if follow_up.advance:
            pending += engine.advance_plan(plan_id)
    raise AssertionError(f"still starting attempts after {limit} executions")


def decisions_fail_for(monkeypatch, failing) -> object:
    """The autonomy decision raises for the (plan, step) `failing` picks; returns the real decide_step."""
    decide = engine.decide_step

    def broken(plan, step, **kwargs):
        if failing(plan, step):
            raise RuntimeError("autonomy settings unreadable")
        return decide(plan, step, **kwargs)

    monkeypatch.setattr(engine, "decide_step", broken)
    return decide


def step_statuses(plan):
    return list(PlanStep.objects.filter(plan=plan).order_by("sequence").values_list("action_type", "status"))


def test_a_plan_runs_in_dependency_order_waits_for_the_meeting_approval_and_completes(world, calendar_for):
    # given
    calendar_for(world.tenant)
    plan = approved_plan(world, MEETING, BRIEF)
    # when: the orchestrator activates it; the meeting contacts the customer, so it waits
    run_until_quiet(plan.id)
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ACTIVE
    assert step_statuses(plan) == [(MEETING, StepStatus.PENDING_APPROVAL), (BRIEF, StepStatus.PENDING)]
    assert plan.next_run_at is None  # waiting for a person needs no tick
    # when: the seller approves the meeting
    meeting = plan.steps.get(action_type=MEETING)
    services.step_approve(plan_id=plan.id, step_id=meeting.step_id, user=world.seller)
    run_until_quiet(plan.id)
    # then
    plan.refresh_from_db()
    assert step_statuses(plan) == [(MEETING, StepStatus.DONE), (BRIEF, StepStatus.AUTO_EXECUTED)]
    assert (plan.plan_status, plan.completion_reason) == (PlanStatus.COMPLETED, "all_steps_done")
    meeting_intent = ActionIntent.objects.get(step_id=meeting.step_id)
    assert meeting_intent.approved_by == world.seller
    brief_intent = ActionIntent.objects.get(plan=plan, action_type=BRIEF)
    assert meeting_intent.finished_at < brief_intent.started_at
    events = list(PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq").values_list("event_type", flat=True))
    assert events == [
        EventType.PLAN_CREATED, EventType.PLAN_APPROVED, EventType.PLAN_ACTIVATED, EventType.STEP_AWAITING_APPROVAL,
        EventType.STEP_APPROVED, EventType.STEP_ATTEMPT_STARTED, EventType.ACTION_EXECUTED,
        EventType.STEP_ATTEMPT_STARTED, EventType.ACTION_EXECUTED, EventType.PLAN_COMPLETED,
    ]


def test_objective_met_completes_mid_plan(world):
    plan = approved_plan(world, BRIEF, ESCALATE)
    engine.advance_plan(plan.id)  # activates, starts the brief
    services.signal_record(account_id=world.account.id, signal_type="RENEWAL_COMMITTED")
    run_until_quiet(plan.id)
    plan.refresh_from_db()
    assert (plan.plan_status, plan.completion_reason) == (PlanStatus.COMPLETED, "objective_met")
    escalate = plan.steps.get(action_type=ESCALATE)  # never needed: closed with the plan, never run
    assert (escalate.status, escalate.closed_with_plan, escalate.attempts) == (StepStatus.SKIPPED, True, 0)
    assert escalate.skip_reason.startswith("The plan was COMPLETED: The objective was met")


def test_an_activation_the_unique_index_refuses_is_looked_at_again_later(world, settings, monkeypatch):
    # given: another plan of the type went ACTIVE where the gate did not see it (a race the index catches)
    plan = approved_plan(world, BRIEF)
    make_plan(account=world.account, status=PlanStatus.ACTIVE)
    gate_facts = selectors.gate_facts

    def blind_gate_facts(*args, **kwargs):
        return dataclasses.replace(gate_facts(*args, **kwargs), conflicting_plan_id=None)

    monkeypatch.setattr(selectors, "gate_facts", blind_gate_facts)
    started = timezone.now()
    # when
    assert engine.advance_plan(plan.id) == []
    # then: still APPROVED, nothing written but the recheck time
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.APPROVED
    assert plan.next_run_at >= started + timedelta(seconds=settings.ORCHESTRATOR_ACTIVATION_RECHECK_SECONDS)
    assert not ActionIntent.objects.filter(plan=plan).exists()
    last_entry = PlanLedgerEntry.objects.filter(plan=plan).order_by("-chain_seq").first()
    assert last_entry.event_type == EventType.PLAN_APPROVED


def test_a_plan_past_its_window_expires(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, expires_at=timezone.now() - timedelta(seconds=1))
    assert engine.advance_plan(plan.id) == []
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.EXPIRED


def test_retry_limit_pauses_then_skip_and_resume_completes(world, crm, crm_for):
    # given: a CRM that always fails with 400, so every attempt fails at once
    crm_for(world.tenant)
    crm.state.scripted = [400] * 20
    plan = approved_plan(world, BRIEF, ESCALATE)
    run_until_quiet(plan.id)
    escalate = plan.steps.get(action_type=ESCALATE)
    assert escalate.status == StepStatus.PENDING_APPROVAL  # HIGH risk never runs on its own
    # when: a person approves the escalation
    services.step_approve(plan_id=plan.id, step_id=escalate.step_id, user=world.admin)
    run_until_quiet(plan.id)
    # then: three attempts, then the plan is PAUSED with RETRY_LIMIT_EXCEEDED, held by the step's layer
    plan.refresh_from_db()
    escalate.refresh_from_db()
    assert (escalate.status, escalate.attempts) == (StepStatus.FAILED, 3)
    assert (plan.plan_status, plan.stop_reason_code) == (PlanStatus.PAUSED, "RETRY_LIMIT_EXCEEDED")
    assert [(layer.kind, layer.scope) for layer in open_layers(plan)] == [
        (PauseKind.RETRY_LIMIT, str(escalate.step_id))]
    assert PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STEP_RETRY_SCHEDULED).count() == 2
    assert len(crm.state.posts()) == 3
    # and a resume alone does not lift it
    with pytest.raises(Conflict) as refused:
        services.plan_resume(plan_id=plan.id, user=world.seller)
    assert refused.value.code == "STEP_FAILED"
    # when: a person skips the optional step: its layer is lifted and, nothing else holding it, the plan runs on
    services.step_skip(plan_id=plan.id, step_id=escalate.step_id, user=world.seller, reason="handled by phone")
    plan.refresh_from_db()
    assert (plan.plan_status, open_layers(plan)) == (PlanStatus.ACTIVE, [])
    assert list(PlanLedgerEntry.objects.filter(plan=plan).order_by("-chain_seq")[:3]
                .values_list("event_type", flat=True)) == [
        EventType.PLAN_RESUMED, EventType.PAUSE_LAYER_LIFTED, EventType.STEP_SKIPPED]
    run_until_quiet(plan.id)
    plan.refresh_from_db()
    assert (plan.plan_status, plan.completion_reason) == (PlanStatus.COMPLETED, "all_steps_done")


def plan_rows(plan_id) -> tuple:
    """The plan's row, its steps' rows and its ledger entries' types."""
    return (
        RevenuePlan.objects.filter(pk=plan_id).values().get(),
        list(PlanStep.objects.filter(plan_id=plan_id).order_by("sequence").values()),
        list(PlanLedgerEntry.objects.filter(plan_id=plan_id).order_by("chain_seq")
             .values_list("event_type", flat=True)),
    )


def test_a_plan_is_not_settled_while_the_evaluator_says_continue(world):
    # given: an ACTIVE plan whose steps wait for a person, no objective signal, time left
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, step_status=StepStatus.PENDING_APPROVAL)
    before = plan_rows(plan.id)
    # when
    assert engine.advance_plan(plan.id) == []
    # then: nothing changed, nothing written
    assert plan_rows(plan.id) == before


def test_completion_records_reason_and_facts(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, step_status=StepStatus.DONE)
    assert engine.advance_plan(plan.id) == []
    plan.refresh_from_db()
    assert (plan.plan_status, plan.completion_reason) == (PlanStatus.COMPLETED, "all_steps_done")
    entry = PlanLedgerEntry.objects.get(plan=plan)
    assert (entry.event_type, entry.reason_code) == (EventType.PLAN_COMPLETED, "all_steps_done")
    assert entry.data["facts"]["unfinished_steps"] == []
    assert entry.actor == "system:orchestrator"


def test_activation_blocked_by_a_kill_switch_is_ledgered_and_changes_nothing_else(world, settings):
    # given
    plan = make_plan(account=world.account, status=PlanStatus.APPROVED)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident")
    before_plan, before_steps, _ = plan_rows(plan.id)
    started = timezone.now()
    # when
    assert engine.advance_plan(plan.id) == []
    # then: still APPROVED, one entry saying why, and a later look
    after_plan, after_steps, events = plan_rows(plan.id)
    assert after_plan.pop("next_run_at") >= started + timedelta(
        seconds=settings.ORCHESTRATOR_ACTIVATION_RECHECK_SECONDS)
    before_plan.pop("next_run_at")
    assert (after_plan, after_steps, events) == (before_plan, before_steps, [EventType.ACTIVATION_BLOCKED])
    entry = PlanLedgerEntry.objects.get(plan=plan)
    assert [reason["code"] for reason in entry.data["reasons"]] == ["PRECONDITION_FAILED"]
    assert not ActionIntent.objects.filter(plan=plan).exists()


def test_a_kill_switch_pauses_an_active_plan(world):
    plan = approved_plan(world, BRIEF)
    engine.advance_plan(plan.id)
    KillSwitch.objects.create(tenant=world.tenant, engaged=True)
    ActionIntent.objects.filter(plan=plan).delete()  # as if the message was never sent
    PlanStep.objects.filter(plan=plan).update(attempts=0)
    engine.advance_plan(plan.id)
    plan.refresh_from_db()
    assert (plan.plan_status, plan.stop_reason_code) == (PlanStatus.PAUSED, "KILL_SWITCH")


def test_an_execution_blocked_by_a_switch_pauses_the_plan_and_sends_nothing(world):
    plan = approved_plan(world, BRIEF)
    (key,) = engine.advance_plan(plan.id)
    KillSwitch.objects.create(tenant=world.tenant, action_type=BRIEF, engaged=True)
    assert step_runner.execute_step(key) == engine.FollowUp()  # nothing to send
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert ActionIntent.objects.get(plan=plan).status == IntentStatus.PENDING


def test_a_duplicate_or_late_message_is_harmless(world):
    plan = approved_plan(world, BRIEF, ESCALATE)
    (key,) = engine.advance_plan(plan.id)
    step_runner.execute_step(key)
    step_runner.execute_step(key)  # redelivered
    intent = ActionIntent.objects.get(plan=plan, step_id=key.step_id)
    assert intent.deliveries == 1
    assert PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.ACTION_EXECUTED).count() == 1


def test_a_finished_step_starts_the_next_one_in_its_own_transaction(world, django_capture_on_commit_callbacks):
    plan = approved_plan(world, BRIEF, BRIEF)
    first, second = plan.steps.order_by("sequence")
    (key,) = engine.advance_plan(plan.id)
    advances = REGISTRY.get_sample_value("revplan_advances_total", {"result": "steps_enqueued"}) or 0
    with django_capture_on_commit_callbacks(execute=True):
        follow_up = step_runner.execute_step(key)
    assert follow_up == engine.FollowUp(keys=[engine.StepKey(plan.id, second.step_id, 1)])
    assert REGISTRY.get_sample_value("revplan_advances_total", {"result": "steps_enqueued"}) == advances + 1
    events = list(PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq").values_list("event_type", "step_id"))
    assert events[-2:] == [(EventType.ACTION_EXECUTED, first.step_id), (EventType.STEP_ATTEMPT_STARTED, second.step_id)]


def test_a_failing_follow_up_advance_keeps_the_outcome_and_asks_for_an_advance_message(world, settings, monkeypatch):
    plan = approved_plan(world, BRIEF, BRIEF)
    first, second = plan.steps.order_by("sequence")
    (key,) = engine.advance_plan(plan.id)
    decide = decisions_fail_for(monkeypatch, lambda plan, step: step.step_id == second.step_id)
    started = timezone.now()
    assert step_runner.execute_step(key) == engine.FollowUp(advance=True)
    # the success is recorded; nothing of the failed advance is
    assert ActionIntent.objects.get(plan=plan, step_id=first.step_id).status == IntentStatus.SUCCEEDED
    assert step_statuses(plan) == [(BRIEF, StepStatus.AUTO_EXECUTED), (BRIEF, StepStatus.PENDING)]
    assert not ActionIntent.objects.filter(step_id=second.step_id).exists()
    last_entry = PlanLedgerEntry.objects.filter(plan=plan).order_by("-chain_seq").first()
    assert last_entry.event_type == EventType.ACTION_EXECUTED
    plan.refresh_from_db()
    assert plan.next_run_at >= started + timedelta(seconds=settings.ORCHESTRATOR_REDELIVERY_SECONDS)  # the tick's net
    # the advance message the task sends then starts the step
    monkeypatch.setattr(engine, "decide_step", decide)
    assert engine.advance_plan(plan.id) == [engine.StepKey(plan.id, second.step_id, 1)]


def test_a_lost_message_is_sent_again_once_the_redelivery_time_passed(world, settings):
    settings.ORCHESTRATOR_REDELIVERY_SECONDS = 0
    plan = approved_plan(world, BRIEF)
    (lost,) = engine.advance_plan(plan.id)  # its message is dropped
    assert engine.advance_plan(plan.id) == [lost]


def test_a_step_whose_worker_keeps_dying_fails_after_bounded_deliveries(world, settings):
    settings.ORCHESTRATOR_MAX_DELIVERIES = 2
    plan = approved_plan(world, BRIEF)
    (key,) = engine.advance_plan(plan.id)
    # two workers started it and died: the last one's claim ran out without an outcome
    ActionIntent.objects.filter(plan=plan).update(deliveries=2, status=IntentStatus.EXECUTING,
                                                  lease_expires_at=timezone.now() - timedelta(seconds=1))
    retry = step_runner.execute_step(key)
    intent = ActionIntent.objects.get(plan=plan, attempt=1)
    assert (intent.status, intent.failure_class) == (IntentStatus.FAILED, "WORKER_LOST")
    step = PlanStep.objects.get(plan=plan)
    assert (step.status, step.attempts) == (StepStatus.PENDING, 2)  # the retry (no delay here) started at once
    assert step.last_error.startswith("WORKER_LOST")
    assert retry.keys == [engine.StepKey(plan.id, step.step_id, 2)]


@pytest.mark.parametrize("lease_left", [None, timedelta(minutes=1)], ids=["before-the-first-claim", "live-claim"])
def test_copies_of_a_message_are_not_counted_as_worker_deaths(world, settings, lease_left):
    settings.ORCHESTRATOR_MAX_DELIVERIES = 2
    plan = approved_plan(world, BRIEF)
    (key,) = engine.advance_plan(plan.id)
    fields = {"deliveries": 2}
    if lease_left:  # a worker is on it right now
        fields.update(status=IntentStatus.EXECUTING, lease_expires_at=timezone.now() + lease_left)
    ActionIntent.objects.filter(plan=plan).update(**fields)
    step_runner.execute_step(key)
    intent = ActionIntent.objects.get(plan=plan)
    assert intent.deliveries == 2
    assert intent.status == (IntentStatus.EXECUTING if lease_left else IntentStatus.SUCCEEDED)


def test_a_paused_plan_is_never_advanced(world):
    plan = approved_plan(world, BRIEF)
    engine.advance_plan(plan.id)
    services.plan_pause(plan_id=plan.id, user=world.seller, reason="hold")
    assert engine.advance_plan(plan.id) == []
    assert ActionIntent.objects.filter(plan=plan).count() == 1


# --- tick --------------------------------------------------------------------------------------


def test_tick_claims_due_plans_once_and_skips_idle_ones(world):
    due = [approved_plan(world, BRIEF, account=AccountFactory(tenant=world.tenant, owner=world.seller))
           for _ in range(3)]
    idle = make_plan(account=AccountFactory(tenant=world.tenant), status=PlanStatus.ACTIVE)  # next_run_at NULL
    expired = make_plan(account=AccountFactory(tenant=world.tenant), status=PlanStatus.PAUSED,
                        expires_at=timezone.now() - timedelta(minutes=1))
    first = claims.due_plan_ids()
    assert set(first) == {p.id for p in due} | {expired.id}
    assert idle.id not in first
    assert claims.due_plan_ids() == []  # the guard: a second beat finds nothing to enqueue again


def test_tick_query_count_does_not_depend_on_idle_plans(world):
    approved_plan(world, BRIEF)
    with CaptureQueriesContext(connection) as few:
        claims.due_plan_ids()
    for _ in range(30):
        make_plan(account=AccountFactory(tenant=world.tenant), status=PlanStatus.ACTIVE)
    approved_plan(world, BRIEF, account=AccountFactory(tenant=world.tenant, owner=world.seller))
    with CaptureQueriesContext(connection) as many:
        assert len(claims.due_plan_ids()) == 1
    assert len(many) == len(few) == 4  # due, expired, released by the global switch, lost executions
