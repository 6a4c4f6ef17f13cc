"""A person's retry of a FAILED step (a redrive, DESIGN §3.3), through the service: a new series of
attempts, the step's RETRY_LIMIT layer lifted, ledgered; every refusal changes nothing."""
import uuid

import pytest
from django.utils import timezone

from plans import services
from plans.errors import Conflict, NotFound
from plans.lifecycle import TERMINAL
from plans.models import (
    EventType,
    KillSwitch,
    Membership,
    PauseKind,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    StepStatus,
)
from plans.services.layers import open_layers
from tests.factories import make_plan
from tests.support.stalls import fail_at_the_limit

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


def new_events(plan, since_seq: int) -> list[str]:
    return list(PlanLedgerEntry.objects.filter(plan=plan, chain_seq__gt=since_seq).order_by("chain_seq")
                .values_list("event_type", flat=True))


def last_seq(plan) -> int:
    return PlanLedgerEntry.objects.filter(plan=plan).order_by("-chain_seq").values_list("chain_seq", flat=True)[0]


def state_of(plan) -> tuple:
    return (
        RevenuePlan.objects.filter(pk=plan.pk).values().get(),
        list(PlanStep.objects.filter(plan=plan).order_by("sequence").values()),
        list(PauseLayer.objects.filter(plan=plan).order_by("id").values()),
        PlanLedgerEntry.objects.filter(tenant=plan.tenant_id).count(),
    )


@pytest.fixture
def held_plan(world):
    """An ACTIVE plan whose (approved) brief failed at the retry limit: PAUSED [RETRY_LIMIT]."""
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF, ESCALATE))
    brief = plan.steps.get(action_type=BRIEF)
    PlanStep.objects.filter(pk=brief.pk).update(approved_by=world.approver, approved_at=timezone.now())
    brief = fail_at_the_limit(plan, brief)
    assert plan.plan_status == PlanStatus.PAUSED
    assert [(layer.kind, layer.scope) for layer in open_layers(plan)] == [(PauseKind.RETRY_LIMIT, str(brief.step_id))]
    return plan, brief


def test_retry_starts_a_new_series_lifts_the_layer_and_the_plan_runs_on(world, held_plan):
    # given
    plan, brief = held_plan
    seq, version = last_seq(plan), plan.version
    approved_at = brief.approved_at
    # when
    services.step_retry(plan_id=plan.id, step_id=brief.step_id, user=world.seller, reason="The CRM is back up.")
    # then: PENDING with the attempts made so far counted as an earlier series; numbers keep counting
    brief.refresh_from_db()
    plan.refresh_from_db()
    assert (brief.status, brief.attempts, brief.attempts_before_series, brief.attempts_in_series) == (
        StepStatus.PENDING, 3, 3, 0)
    assert brief.next_attempt_at is None
    # the last error stays, as history, until the next attempt's outcome replaces it
    assert brief.last_error == "TRANSIENT: CRM answered 503"
    # a retry is not a change of content: the step's approval still holds
    assert (brief.approved_by_id, brief.approved_at) == (world.approver.pk, approved_at)
    # nothing else holds the plan: it runs again, and the orchestrator looks at it now
    assert plan.plan_status == PlanStatus.ACTIVE
    assert open_layers(plan) == []
    assert plan.version > version
    assert plan.next_run_at is not None
    assert plan.next_run_at <= timezone.now()
    assert new_events(plan, seq) == [EventType.STEP_RETRIED, EventType.PAUSE_LAYER_LIFTED, EventType.PLAN_RESUMED]
    retried = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.STEP_RETRIED)
    assert (retried.step_id, retried.actor, retried.reason_code) == (brief.step_id, f"user:{world.seller.pk}",
                                                                     "STEP_RETRIED")
    assert retried.data["attempts_before_series"] == 3
    assert retried.data["first_attempt"] == 4
    assert retried.data["last_error"] == "TRANSIENT: CRM answered 503"
    assert retried.data["reason"] == "The CRM is back up."
    assert "attempt 4" in retried.explanation
    lifted = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.PAUSE_LAYER_LIFTED)
    assert lifted.reason_code == PauseKind.RETRY_LIMIT
    assert lifted.actor == f"user:{world.seller.pk}"


def test_retry_lifts_only_its_own_layer_a_persons_pause_still_holds(world, held_plan):
    # given: a person paused the plan as well
    plan, brief = held_plan
    services.plan_pause(plan_id=plan.id, user=world.approver, reason="Wait for the QBR.")
    # when
    services.step_retry(plan_id=plan.id, step_id=brief.step_id, user=world.seller)
    # then
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert [layer.kind for layer in open_layers(plan)] == [PauseKind.PERSON]
    assert PlanStep.objects.get(pk=brief.pk).status == StepStatus.PENDING
    # and the person's resume now lets it run
    services.plan_resume(plan_id=plan.id, user=world.approver)
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ACTIVE


def test_retry_lifts_one_failed_steps_layer_while_another_failed_step_still_holds(world):
    # given: two steps failed at the limit
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF))
    meeting, brief = plan.steps.get(action_type=MEETING), plan.steps.get(action_type=BRIEF)
    fail_at_the_limit(plan, meeting)
    fail_at_the_limit(plan, brief)
    # when
    services.step_retry(plan_id=plan.id, step_id=brief.step_id, user=world.seller)
    # then
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert [(layer.kind, layer.scope) for layer in open_layers(plan)] == [(PauseKind.RETRY_LIMIT, str(meeting.step_id))]


def test_an_unscoped_retry_limit_layer_is_lifted_by_the_retry_of_the_only_failed_step(world):
    # given: a layer from before layers named their step (scope '')
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    brief = plan.steps.get()
    PlanStep.objects.filter(pk=brief.pk).update(status=StepStatus.FAILED, attempts=3)
    services.plan_pause_by_policy(plan_id=plan.id, component="orchestrator", kind=PauseKind.RETRY_LIMIT,
                                  reason_code="RETRY_LIMIT_EXCEEDED", explanation="The brief failed 3 times.")
    # when
    services.step_retry(plan_id=plan.id, step_id=brief.step_id, user=world.seller)
    # then
    plan.refresh_from_db()
    assert (plan.plan_status, open_layers(plan)) == (PlanStatus.ACTIVE, [])


def test_retry_on_an_active_plan_with_a_failed_step_runs_it_again(world):
    # given: an ACTIVE plan with a FAILED step and no layer (the stall the engine's advance catches)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    brief = plan.steps.get()
    PlanStep.objects.filter(pk=brief.pk).update(status=StepStatus.FAILED, attempts=2)
    # when
    services.step_retry(plan_id=plan.id, step_id=brief.step_id, user=world.approver)
    # then
    plan.refresh_from_db()
    brief.refresh_from_db()
    assert (plan.plan_status, brief.status, brief.attempts_before_series) == (PlanStatus.ACTIVE, StepStatus.PENDING, 2)
    assert plan.next_run_at <= timezone.now()


def test_when_the_gate_refuses_the_plan_stays_paused_with_a_policy_layer_and_the_retry_holds(world, held_plan):
    # given: the owner left the tenant meanwhile
    plan, brief = held_plan
    Membership.objects.filter(user=world.seller, tenant=world.tenant).update(is_active=False)
    # when
    services.step_retry(plan_id=plan.id, step_id=brief.step_id, user=world.approver)
    # then: the step is retried, but the plan does not run: a POLICY layer says why
    plan.refresh_from_db()
    assert PlanStep.objects.get(pk=brief.pk).status == StepStatus.PENDING
    assert plan.plan_status == PlanStatus.PAUSED
    [layer] = open_layers(plan)
    assert (layer.kind, layer.reason_code) == (PauseKind.POLICY, "PRECONDITION_FAILED")


def test_resume_alone_is_refused_with_step_failed_and_changes_nothing(world, held_plan):
    plan, _ = held_plan
    before = state_of(plan)
    with pytest.raises(Conflict) as refused:
        services.plan_resume(plan_id=plan.id, user=world.seller)
    assert refused.value.code == "STEP_FAILED"
    assert "retry" in refused.value.detail
    assert [reason.code for reason in refused.value.reasons] == [PauseKind.RETRY_LIMIT]
    assert state_of(plan) == before


@pytest.mark.parametrize("step_status", [status for status in StepStatus if status != StepStatus.FAILED])
def test_a_step_that_did_not_fail_is_refused_with_step_not_failed(world, step_status):
    # an optional step: a required one can be SKIPPED only with its plan
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(ESCALATE,))
    step = plan.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(status=step_status)
    before = state_of(plan)
    with pytest.raises(Conflict) as refused:
        services.step_retry(plan_id=plan.id, step_id=step.step_id, user=world.seller)
    assert refused.value.code == "STEP_NOT_FAILED"
    assert state_of(plan) == before


@pytest.mark.parametrize("plan_status", [PlanStatus.DRAFT, PlanStatus.APPROVED, *sorted(TERMINAL)])
def test_a_failed_step_of_a_draft_approved_or_finished_plan_is_refused_as_invalid_transition(world, plan_status):
    plan = make_plan(account=world.account, status=plan_status, action_types=(BRIEF,))
    step = plan.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.FAILED, attempts=3)
    before = state_of(plan)
    with pytest.raises(Conflict) as refused:
        services.step_retry(plan_id=plan.id, step_id=step.step_id, user=world.seller)
    assert refused.value.code == "INVALID_TRANSITION"
    assert state_of(plan) == before


def test_a_stale_version_or_an_unknown_step_is_refused(world, held_plan):
    plan, brief = held_plan
    before = state_of(plan)
    with pytest.raises(Conflict) as stale:
        services.step_retry(plan_id=plan.id, step_id=brief.step_id, user=world.seller,
                            expected_version=plan.version - 1)
    assert stale.value.code == "VERSION_CONFLICT"
    with pytest.raises(NotFound):
        services.step_retry(plan_id=plan.id, step_id=uuid.uuid4(), user=world.seller)
    assert state_of(plan) == before


def test_a_kill_switch_layer_is_not_lifted_by_a_retry(world, held_plan):
    # given: the tenant's kill switch also holds the plan
    plan, brief = held_plan
    KillSwitch.objects.create(tenant=world.tenant, action_type="", engaged=True, reason="incident")
    services.plan_pause_by_policy(plan_id=plan.id, component="orchestrator", kind=PauseKind.KILL_SWITCH,
                                  reason_code="KILL_SWITCH", explanation="Execution is switched off.")
    # when
    services.step_retry(plan_id=plan.id, step_id=brief.step_id, user=world.seller)
    # then
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert [layer.kind for layer in open_layers(plan)] == [PauseKind.KILL_SWITCH]
