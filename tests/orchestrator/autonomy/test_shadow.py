"""Shadow mode in the engine: the policy's verdict recorded beside the person's decision, and agreement."""
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.autonomy import services as autonomy
from orchestrator.autonomy import shadow
from orchestrator.autonomy.models import PersonDecision, ShadowDecision
from orchestrator.execution.models import ActionIntent
from plans import services
from plans.models import EventType, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.schemas import PlanDraftInput, StepInput
from tests.factories import AccountFactory, make_plan
from tests.orchestrator.test_engine import BRIEF, run_until_quiet

pytestmark = pytest.mark.django_db
MEETING = "REQUEST_RENEWAL_MEETING"


def in_shadow(world, *action_types):
    for action_type in action_types:
        autonomy.action_type_autonomy_set(tenant_id=world.tenant.id, user=world.admin, action_type=action_type,
                                          mode="SHADOW")


def waiting_plan(world, *, account=None, action_types=(BRIEF,)):
    plan = make_plan(account=account or world.account, status=PlanStatus.ACTIVE, action_types=action_types,
                     approved_by=world.approver)
    run_until_quiet(plan.id)
    return plan


def test_a_shadow_step_waits_for_a_person_and_records_that_the_policy_would_have_run_it(world):
    in_shadow(world, BRIEF)
    plan = waiting_plan(world)
    step = plan.steps.get()
    # then: nothing ran on its own; the person is asked, and the ledger and the row say what the policy would do
    assert step.status == StepStatus.PENDING_APPROVAL
    assert not ActionIntent.objects.filter(plan=plan).exists()
    awaiting = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.STEP_AWAITING_APPROVAL)
    assert awaiting.reason_code == "SHADOW_MODE"
    assert awaiting.data["autonomy_decision"]["shadow"]["decision"] == "AUTO_EXECUTE"
    row = ShadowDecision.objects.get(plan=plan)
    assert (row.step_id, row.attempt, row.would_run, row.reason) == (step.step_id, 1, True, "AUTONOMY_ALLOWED")
    assert row.person_decision == PersonDecision.UNDECIDED
    # a second advance of the same wait records nothing more
    run_until_quiet(plan.id)
    assert ShadowDecision.objects.filter(plan=plan).count() == 1
    # when: the person approves; the attempt says what the policy would have done
    services.step_approve(plan_id=plan.id, step_id=step.step_id, user=world.seller)
    run_until_quiet(plan.id)
    intent = ActionIntent.objects.get(plan=plan)
    assert intent.approved_by_id == world.seller.pk
    assert intent.autonomy_decision["reason"] == "APPROVED_BY_PERSON"
    assert intent.autonomy_decision["shadow"]["decision"] == "AUTO_EXECUTE"
    assert shadow.resolve(world.tenant.id) == 1
    row.refresh_from_db()
    assert (row.person_decision, row.person_decided_by) == (PersonDecision.APPROVED, world.seller.pk)


def test_a_step_that_contacts_the_customer_is_one_the_policy_would_have_left_to_a_person(world):
    in_shadow(world, MEETING)
    plan = waiting_plan(world, action_types=(MEETING,))
    row = ShadowDecision.objects.get(plan=plan)
    assert (row.would_run, row.reason) == (False, "EXTERNAL_CONTACT")


def test_other_modes_record_no_shadow_decision(world):
    plan = waiting_plan(world)  # APPROVAL_REQUIRED, the default
    assert plan.steps.get().status == StepStatus.PENDING_APPROVAL
    assert not ShadowDecision.objects.exists()


def _edited_and_approved(world, plan):
    """The person sends the plan back, edits the step, approves the plan again and then the step."""
    step = plan.steps.get()
    services.plan_revise(plan_id=plan.id, user=world.seller, reason="say more")
    services.plan_edit(plan_id=plan.id, user=world.seller, draft=PlanDraftInput(steps=[StepInput(
        step_id=step.step_id, action_type=BRIEF, parameters={"focus": "usage drop"})]))
    services.plan_approve(plan_id=plan.id, user=world.approver)
    run_until_quiet(plan.id)
    services.step_approve(plan_id=plan.id, step_id=step.step_id, user=world.seller)


@pytest.mark.parametrize(("act", "expected"), [
    (lambda world, plan: services.step_approve(plan_id=plan.id, step_id=plan.steps.get().step_id, user=world.seller),
     PersonDecision.APPROVED),
    (lambda world, plan: services.plan_abort(plan_id=plan.id, user=world.seller, reason="customer churned"),
     PersonDecision.ABORTED),
    # the plan ended with nobody deciding: no evidence either way (its waiting step is closed, not skipped)
    (lambda world, plan: services.plan_abort_by_policy(plan_id=plan.id, component="tests", reason_code="X",
                                                       explanation="a rule stopped it"), PersonDecision.NONE),
    (lambda world, plan: _expire(plan), PersonDecision.NONE),
    (lambda world, plan: _skipped_by_a_rule(plan), PersonDecision.NONE),
])
def test_each_kind_of_person_decision_is_read_from_the_plans_ledger(world, act, expected):
    in_shadow(world, BRIEF)
    plan = waiting_plan(world)
    act(world, plan)
    assert shadow.resolve(world.tenant.id) == 1
    assert ShadowDecision.objects.get(plan=plan).person_decision == expected
    assert shadow.resolve(world.tenant.id) == 0  # stored once


def _skipped_by_a_rule(plan):
    PlanStep.objects.filter(plan=plan).update(required=False)
    services.step_skip_by_policy(plan_id=plan.id, step_id=plan.steps.get().step_id, component="deadlines",
                                 reason="Nobody approved it in time.")


def _expire(plan):
    RevenuePlan.objects.filter(pk=plan.id).update(expires_at=timezone.now() - timedelta(minutes=1))
    run_until_quiet(plan.id)
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.EXPIRED


def test_a_step_approved_after_an_edit_is_a_disagreement(world):
    # the plan is revised, the waiting step edited, the plan approved again: the step still waits with the
    # verdict on its first content, and the person then approves the edited one
    in_shadow(world, BRIEF)
    plan = waiting_plan(world)
    _edited_and_approved(world, plan)
    assert shadow.resolve(world.tenant.id) == 1
    assert ShadowDecision.objects.get(plan=plan).person_decision == PersonDecision.APPROVED_AFTER_EDIT


def test_a_later_change_to_the_step_does_not_change_a_stored_or_read_decision(world):
    in_shadow(world, BRIEF)
    plan = waiting_plan(world)
    step = plan.steps.get()
    services.step_approve(plan_id=plan.id, step_id=step.step_id, user=world.seller)
    # the approval is voided later (as an edit would): the history still says approved as judged
    PlanStep.objects.filter(pk=step.pk).update(approval_record={}, approved_at=None, approved_by=None)
    now = timezone.now()
    assert shadow.agreement(world.tenant.id, since=now - timedelta(days=1))[BRIEF]["agreed"] == 1


def test_a_skipped_optional_step_is_a_disagreement(world):
    in_shadow(world, BRIEF)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,),
                     approved_by=world.approver)
    PlanStep.objects.filter(plan=plan).update(required=False)
    run_until_quiet(plan.id)
    services.step_skip(plan_id=plan.id, step_id=plan.steps.get().step_id, user=world.seller, reason="not needed")
    shadow.resolve(world.tenant.id)
    assert ShadowDecision.objects.get(plan=plan).person_decision == PersonDecision.SKIPPED


def test_agreement_counts_would_run_and_would_ask_apart_and_resolves_open_rows_without_writing(world):
    in_shadow(world, BRIEF, MEETING)
    plans = [waiting_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller)) for _ in range(4)]
    meeting = waiting_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller),
                           action_types=(MEETING,))
    for plan in plans[:3]:
        services.step_approve(plan_id=plan.id, step_id=plan.steps.get().step_id, user=world.seller)
    services.plan_abort(plan_id=plans[3].id, user=world.seller, reason="wrong account")
    services.step_approve(plan_id=meeting.id, step_id=meeting.steps.get().step_id, user=world.seller)
    now = timezone.now()
    counts = shadow.agreement(world.tenant.id, since=now - timedelta(days=30))
    assert not ShadowDecision.objects.exclude(person_decision="").exists()  # a read writes nothing
    assert counts[BRIEF]["agreed"] == 3
    assert counts[BRIEF]["would_run"]["decided"] == 4
    assert counts[BRIEF]["would_run"]["by_person_decision"]["ABORTED"] == 1
    assert counts[BRIEF]["agreement"] == 0.75
    assert counts[MEETING]["would_ask"]["decided"] == 1
    assert counts[MEETING]["agreement"] is None
    # the same once stored; and a window that starts later sees none
    shadow.resolve(world.tenant.id)
    assert shadow.agreement(world.tenant.id, since=now - timedelta(days=30)) == counts
    assert shadow.agreement(world.tenant.id, since=now + timedelta(seconds=1)) == {}


def test_changing_a_mode_leaves_every_plans_approval_current(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF, BRIEF),
                     approved_by=world.approver)
    in_shadow(world, BRIEF)
    autonomy.action_type_autonomy_set(tenant_id=world.tenant.id, user=world.admin, action_type=BRIEF,
                                      mode="AUTO_EXECUTE")
    run_until_quiet(plan.id)
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ACTIVE
    assert not plan.pause_layers.filter(kind="APPROVAL_STALE").exists()
