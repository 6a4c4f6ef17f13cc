"""Plans advance on their own with a real celery worker and beat: order, step approval, completion,
objective met, expiry, and a step that keeps failing until a person skips it."""
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.engine import RETRY_LIMIT_EXCEEDED
from orchestrator.execution.models import (
    ActionIntent,
    AttemptOutcome,
    ConnectorConfig,
    ExecutionAttempt,
    FailureClass,
    IntentStatus,
)
from plans import ledger, services
from plans.models import EventType, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.plan_types import RENEWAL_DEFENSE, get_action_type
from plans.schemas import PlanDraftInput, StepInput
from tests.conftest import build_world
from tests.factories import allow_autopilot
from tests.integration.harness import wait_for

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


def chained_plan(world, *action_types):
    """An approved plan whose steps run one after another; the tenant lets the (LOW-risk) brief run on its own."""
    allow_autopilot(world.tenant, BRIEF)
    steps, previous = [], None
    for action_type in action_types:
        step = StepInput(step_id=uuid.uuid4(), action_type=action_type, depends_on=[previous] if previous else [])
        steps.append(step)
        previous = step.step_id
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=PlanDraftInput(steps=steps), actor=world.seller)
    return services.plan_approve(plan_id=plan.id, user=world.admin)


def approve_when_waiting(world, plan, action_type: str) -> None:
    """A person approves the step once the orchestrator has asked for it (HIGH risk never runs on its own)."""
    wait_for(lambda: step_status(plan, action_type) == StepStatus.PENDING_APPROVAL, timeout=60,
             what=f"{action_type} to wait for approval")
    step = PlanStep.objects.get(plan=plan, action_type=action_type)
    services.step_approve(plan_id=plan.id, step_id=step.step_id, user=world.approver)


def plan_status(plan) -> str:
    plan.refresh_from_db()
    return plan.plan_status


def step_status(plan, action_type: str) -> str:
    return PlanStep.objects.get(plan=plan, action_type=action_type).status


def entries(plan, event_type: str | None = None) -> list[PlanLedgerEntry]:
    rows = PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq")
    return list(rows.filter(event_type=event_type) if event_type else rows)


def use_calendar(world, radicale) -> None:
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar", settings={"url": radicale.url})


def use_crm(world, crm, **extra) -> None:
    ConnectorConfig.objects.create(
        tenant=world.tenant, connector="crm",
        settings={"base_url": crm.base_url, "api_key": "k", "timeout_seconds": 2, **extra},
    )


@pytest.mark.timeout(90)
def test_approved_plan_waits_for_the_meeting_approval_then_completes(cluster, radicale):
    # given
    world = build_world()
    use_calendar(world, radicale)
    plan = chained_plan(world, MEETING, BRIEF)
    cluster.start_worker()
    cluster.start_beat()
    # when: the beat's tick activates it and the meeting step waits for a person
    meeting = plan.steps.get(action_type=MEETING)
    wait_for(lambda: PlanStep.objects.get(pk=meeting.pk).status == StepStatus.PENDING_APPROVAL, timeout=30,
             what="the meeting to wait for approval")
    assert plan_status(plan) == PlanStatus.ACTIVE
    services.step_approve(plan_id=plan.id, step_id=meeting.step_id, user=world.seller)
    # then
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=40, what="the plan to complete")
    assert plan.completion_reason == "all_steps_done"
    statuses = dict(PlanStep.objects.filter(plan=plan).values_list("action_type", "status"))
    assert statuses == {MEETING: StepStatus.DONE, BRIEF: StepStatus.AUTO_EXECUTED}
    intents = {i.action_type: i for i in ActionIntent.objects.filter(plan=plan)}
    assert intents[MEETING].finished_at < intents[BRIEF].started_at


@pytest.mark.timeout(120)
def test_a_renewal_committed_while_the_meeting_waits_completes_the_plan_with_objective_met(cluster, radicale):
    # given: an active plan whose meeting waits for a person (nothing for the tick to do)
    world = build_world()
    use_calendar(world, radicale)
    plan = chained_plan(world, MEETING, BRIEF)
    cluster.start_worker()
    cluster.start_beat()
    wait_for(lambda: step_status(plan, MEETING) == StepStatus.PENDING_APPROVAL, timeout=60,
             what="the meeting to wait for approval")
    # when: the customer commits to the renewal
    signal, _ = services.signal_record(account_id=world.account.id, signal_type="RENEWAL_COMMITTED",
                                       payload={"source": "crm", "deal": "renewal-2025"})
    # then: the plan completes on its objective, and the steps it no longer needs never run: they are
    # closed with it (SKIPPED, one STEP_CLOSED entry each after the plan's)
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=60, what="the plan to complete")
    assert plan.completion_reason == "objective_met"
    assert (step_status(plan, MEETING), step_status(plan, BRIEF)) == (StepStatus.SKIPPED, StepStatus.SKIPPED)
    assert not ActionIntent.objects.filter(plan=plan).exists()
    *_, completed, closed_meeting, closed_brief = entries(plan)
    assert (closed_meeting.event_type, closed_brief.event_type) == (EventType.STEP_CLOSED, EventType.STEP_CLOSED)
    assert (completed.event_type, completed.reason_code, completed.actor) == (
        EventType.PLAN_COMPLETED, "objective_met", "system:orchestrator")
    assert completed.data["facts"]["objective_signal"] == {
        "signal_type": "RENEWAL_COMMITTED", "observed_at": signal.observed_at.isoformat()}
    assert ledger.verify_ledger(plan_id=plan.id).ok


@pytest.mark.timeout(120)
def test_plans_past_their_window_expire_whether_active_or_still_approved(cluster, radicale):
    # given: one plan ACTIVE (its meeting waits for a person) whose window closes in a moment ...
    running_world, approved_world = build_world(), build_world()
    use_calendar(running_world, radicale)
    running = chained_plan(running_world, MEETING, BRIEF)
    cluster.start_worker()
    cluster.start_beat()
    wait_for(lambda: step_status(running, MEETING) == StepStatus.PENDING_APPROVAL, timeout=60,
             what="the meeting to wait for approval")
    # ... and one APPROVED plan whose window closed before the orchestrator activated it. The windows are
    # moved by hand: a renewal date only gives day-long windows.
    approved = chained_plan(approved_world, BRIEF)
    RevenuePlan.objects.filter(pk=approved.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    RevenuePlan.objects.filter(pk=running.pk).update(expires_at=timezone.now() + timedelta(seconds=2))
    # then: the beat's tick expires both; nothing runs after the window
    wait_for(lambda: plan_status(running) == PlanStatus.EXPIRED and plan_status(approved) == PlanStatus.EXPIRED,
             timeout=60, what="both plans to expire")
    for plan, from_status in ((running, PlanStatus.ACTIVE), (approved, PlanStatus.APPROVED)):
        *_, terminal = entries(plan, EventType.PLAN_EXPIRED)
        # the steps that still waited were closed with the plan, after its entry
        assert {step.status for step in PlanStep.objects.filter(plan=plan)} == {StepStatus.SKIPPED}
        assert entries(plan)[-1].event_type == EventType.STEP_CLOSED
        assert (terminal.event_type, terminal.reason_code, terminal.actor) == (
            EventType.PLAN_EXPIRED, "expired", "system:orchestrator")
        assert (terminal.data["from_status"], terminal.data["to_status"]) == (from_status, PlanStatus.EXPIRED)
        assert plan.expired_at is not None
        assert plan.completion_reason == ""
        assert ledger.verify_ledger(plan_id=plan.id).ok
    assert entries(approved, EventType.PLAN_ACTIVATED) == []
    assert [reason["code"] for reason in entries(approved, EventType.ACTIVATION_BLOCKED)[0].data["reasons"]] == [
        "PLAN_EXPIRED"]
    assert not ActionIntent.objects.filter(plan__in=[running, approved]).exists()


@pytest.mark.timeout(150)
def test_a_flaky_crm_pauses_the_plan_at_the_retry_limit_until_a_person_skips_the_optional_step(cluster, crm):
    # given: the CRM answers 503 to everything (far more than the plan will ever try)
    world = build_world()
    use_crm(world, crm)
    crm.state.scripted = [503] * 100
    plan = chained_plan(world, BRIEF, ESCALATE)
    assert get_action_type(ESCALATE).required is False  # the design's only optional RENEWAL_DEFENSE step
    cluster.start_worker()
    cluster.start_beat()
    # when: the brief runs on its own; an approver lets the (HIGH-risk) escalation go
    approve_when_waiting(world, plan, ESCALATE)
    wait_for(lambda: plan_status(plan) == PlanStatus.PAUSED, timeout=90, what="the plan to pause")
    # then: every attempt used up its connector tries, and the plan stopped at the limit, not before or after
    tries_per_attempt, attempts = get_action_type(ESCALATE).max_attempts, RENEWAL_DEFENSE.retry_limit
    assert plan.stop_reason_code == RETRY_LIMIT_EXCEEDED
    escalate = PlanStep.objects.get(plan=plan, action_type=ESCALATE)
    assert (escalate.status, escalate.attempts) == (StepStatus.FAILED, attempts)
    assert escalate.last_error.startswith(FailureClass.TRANSIENT)
    assert step_status(plan, BRIEF) == StepStatus.AUTO_EXECUTED
    intents = ActionIntent.objects.filter(plan=plan, step_id=escalate.step_id).order_by("attempt")
    assert [(i.attempt, i.status, i.failure_class) for i in intents] == [
        (n, IntentStatus.FAILED, FailureClass.TRANSIENT) for n in range(1, attempts + 1)]
    assert ExecutionAttempt.objects.filter(intent__in=intents, outcome=AttemptOutcome.TRANSIENT_ERROR).count() == (
        tries_per_attempt * attempts)
    assert len(crm.state.posts()) == tries_per_attempt * attempts
    assert len(entries(plan, EventType.STEP_RETRY_SCHEDULED)) == attempts - 1
    *_, paused, layer_added = entries(plan)
    assert (paused.event_type, paused.reason_code) == (EventType.PLAN_PAUSED, RETRY_LIMIT_EXCEEDED)
    assert paused.data["facts"]["attempts"] == attempts
    assert (layer_added.event_type, layer_added.data["layer"]["kind"], layer_added.data["layer"]["scope"]) == (
        EventType.PAUSE_LAYER_ADDED, "RETRY_LIMIT", str(escalate.step_id))
    # when: a person skips the failed optional step: that lifts its RETRY_LIMIT layer, the plan runs on
    services.step_skip(plan_id=plan.id, step_id=escalate.step_id, user=world.seller,
                       reason="The support lead is already on it.")
    # then: it completes without trying the CRM again
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=60, what="the plan to complete")
    assert plan.completion_reason == "all_steps_done"
    assert step_status(plan, ESCALATE) == StepStatus.SKIPPED
    assert len(crm.state.posts()) == tries_per_attempt * attempts
    assert ActionIntent.objects.filter(plan=plan, step_id=escalate.step_id).count() == attempts
    assert [entry.event_type for entry in entries(plan)[-6:]] == [
        EventType.PLAN_PAUSED, EventType.PAUSE_LAYER_ADDED, EventType.STEP_SKIPPED, EventType.PAUSE_LAYER_LIFTED,
        EventType.PLAN_RESUMED, EventType.PLAN_COMPLETED]
    assert ledger.verify_ledger(plan_id=plan.id).ok
