"""Service behaviour beyond the matrices: drafts, versions, step skip/approve, refusals that change nothing."""
from uuid import uuid4

import pytest
from django.forms.models import model_to_dict

from plans import services
from plans.errors import Conflict, NotFound, PolicyRefused, ValidationFailed
from plans.models import EventType, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.plan_types import get_plan_type_config
from plans.schemas import PlanDraftInput, StepInput
from tests.factories import make_plan

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


def draft(*action_types, **fields) -> PlanDraftInput:
    return PlanDraftInput(steps=[StepInput(action_type=a) for a in action_types], **fields)


def snapshot(plan_id) -> tuple:
    plan = RevenuePlan.objects.get(pk=plan_id)
    steps = list(PlanStep.objects.filter(plan_id=plan_id).order_by("sequence").values())
    return model_to_dict(plan), steps, PlanLedgerEntry.objects.filter(plan_id=plan_id).count()


def test_plan_type_catalogue():
    config = get_plan_type_config("RENEWAL_DEFENSE")
    assert config.allowed_action_types == (MEETING, BRIEF, ESCALATE)
    assert (config.retry_limit, config.on_retry_limit, config.expires_at_days_from_creation) == (3, "PAUSE", 60)
    assert config.objective_template == "Secure renewal before day -30"
    assert get_plan_type_config("OTHER") is None


# --- propose --------------------------------------------------------------------------------


def test_propose_derives_required_risk_owner_and_records_the_trigger(world):
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=draft(MEETING, BRIEF, ESCALATE), actor=world.seller,
                                 trigger="renewal_window", inputs_summary={"signals": ["SUPPORT_RISK"]})
    steps = list(plan.steps.order_by("sequence"))
    assert [(s.action_type, s.required, s.risk_level) for s in steps] == [
        (MEETING, True, "MEDIUM"), (BRIEF, True, "LOW"), (ESCALATE, False, "HIGH")]
    assert (plan.risk_level, plan.owner, plan.created_by) == ("HIGH", world.seller, f"user:{world.seller.pk}")
    assert plan.constraints == {"no_external_contact_without_approval": True}
    created = PlanLedgerEntry.objects.get(plan=plan)
    assert created.event_type == EventType.PLAN_CREATED
    assert created.data["trigger"] == "renewal_window"
    assert created.data["inputs"] == {"signals": ["SUPPORT_RISK"]}
    assert created.data["plan"]["plan_id"] == str(plan.id)


@pytest.mark.parametrize(
    ("plan_type", "steps", "code"),
    [
        ("EXPAND_FOOTPRINT", [MEETING], "INVALID_PLAN_TYPE"),
        ("RENEWAL_DEFENSE", ["SEND_GIFT"], "STEP_ORDER_VIOLATION"),
        ("RENEWAL_DEFENSE", [BRIEF, MEETING], "STEP_ORDER_VIOLATION"),
    ],
)
def test_a_refused_proposal_writes_nothing(world, plan_type, steps, code):
    with pytest.raises(PolicyRefused) as refused:
        services.plan_propose(account_id=world.account.id, plan_type=plan_type, draft=draft(*steps),
                              actor=world.seller)
    assert code in [reason.code for reason in refused.value.reasons]
    assert RevenuePlan.objects.count() == 0
    assert PlanStep.objects.count() == 0
    assert PlanLedgerEntry.objects.count() == 0


def test_dependencies_must_stay_inside_the_plan(world):
    stranger = uuid4()
    bad = PlanDraftInput(steps=[StepInput(action_type=MEETING), StepInput(action_type=BRIEF, depends_on=[stranger])])
    with pytest.raises(PolicyRefused):
        services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE", draft=bad, actor=world.seller)
    assert RevenuePlan.objects.count() == 0


def test_proposing_for_another_tenants_account_is_404(world, other_world):
    with pytest.raises(NotFound):
        services.plan_propose(account_id=other_world.account.id, plan_type="RENEWAL_DEFENSE", draft=draft(MEETING),
                              actor=world.admin)
    assert RevenuePlan.objects.count() == 0


# --- edit -----------------------------------------------------------------------------------


@pytest.fixture
def proposed(world):
    return services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=draft(MEETING, BRIEF), actor=world.seller)


def test_edit_keeps_step_identity_reorders_recomputes_risk_and_bumps_version(world, proposed):
    meeting, brief = proposed.steps.order_by("sequence")
    edited = services.plan_edit(
        plan_id=proposed.id, user=world.seller, expected_version=1,
        draft=PlanDraftInput(objective="Save the Acme renewal", steps=[
            StepInput(step_id=meeting.step_id, action_type=MEETING, parameters={"duration_minutes": 45}),
            StepInput(step_id=brief.step_id, action_type=BRIEF, depends_on=[meeting.step_id]),
            StepInput(action_type=ESCALATE),
        ]),
    )
    steps = list(edited.steps.order_by("sequence"))
    assert [s.step_id for s in steps[:2]] == [meeting.step_id, brief.step_id]
    assert steps[0].parameters == {"duration_minutes": 45}
    assert steps[1].depends_on == [str(meeting.step_id)]
    assert (edited.risk_level, edited.version, edited.objective) == ("HIGH", 2, "Save the Acme renewal")
    entry = PlanLedgerEntry.objects.filter(plan=proposed).latest("chain_seq")
    assert entry.event_type == EventType.PLAN_EDITED
    assert entry.data["changed_fields"] == ["steps", "objective"]


def test_edit_can_drop_a_step(world, proposed):
    meeting = proposed.steps.get(action_type=MEETING)
    services.plan_edit(plan_id=proposed.id, user=world.seller,
                       draft=PlanDraftInput(steps=[StepInput(step_id=meeting.step_id, action_type=MEETING)]))
    assert list(PlanStep.objects.filter(plan=proposed).values_list("step_id", flat=True)) == [meeting.step_id]


def test_edit_with_a_stale_version_is_409_and_changes_nothing(world, proposed):
    before = snapshot(proposed.id)
    with pytest.raises(Conflict) as conflict:
        services.plan_edit(plan_id=proposed.id, user=world.seller, draft=draft(MEETING), expected_version=7)
    assert conflict.value.code == "VERSION_CONFLICT"
    assert snapshot(proposed.id) == before


def test_an_edit_the_gate_refuses_changes_nothing(world, proposed):
    before = snapshot(proposed.id)
    with pytest.raises(PolicyRefused):
        services.plan_edit(plan_id=proposed.id, user=world.seller, draft=draft(ESCALATE, MEETING))
    assert snapshot(proposed.id) == before


def test_only_a_draft_can_be_edited(world):
    plan = make_plan(account=world.account, status=PlanStatus.APPROVED)
    before = snapshot(plan.id)
    with pytest.raises(Conflict) as conflict:
        services.plan_edit(plan_id=plan.id, user=world.admin, draft=draft(MEETING))
    assert conflict.value.code == "INVALID_TRANSITION"
    assert snapshot(plan.id) == before


def test_revise_then_edit_then_reapprove(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF))
    services.plan_revise(plan_id=plan.id, user=world.seller, reason="add an escalation")
    steps = [StepInput(step_id=s.step_id, action_type=s.action_type) for s in plan.steps.order_by("sequence")]
    services.plan_edit(plan_id=plan.id, user=world.seller,
                       draft=PlanDraftInput(steps=[*steps, StepInput(action_type=ESCALATE)]))
    with pytest.raises(PolicyRefused):  # now HIGH risk: an approver is not enough
        services.plan_approve(plan_id=plan.id, user=world.approver)
    approved = services.plan_approve(plan_id=plan.id, user=world.admin)
    assert (approved.plan_status, approved.approved_by, approved.risk_level) == ("APPROVED", world.admin, "HIGH")


# --- abort, skip and approve steps -------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   "])
def test_abort_needs_a_reason(world, reason):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    before = snapshot(plan.id)
    with pytest.raises(ValidationFailed):
        services.plan_abort(plan_id=plan.id, user=world.admin, reason=reason)
    assert snapshot(plan.id) == before


def test_abort_records_who_and_why(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    aborted = services.plan_abort(plan_id=plan.id, user=world.seller, reason="customer churned")
    assert (aborted.stop_reason_code, aborted.stop_reason_detail) == ("ABORTED_BY_USER", "customer churned")
    assert aborted.aborted_at is not None
    entry = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.PLAN_ABORTED)
    assert (entry.actor, entry.explanation) == (f"user:{world.seller.pk}", "customer churned")
    # and its waiting steps were closed with it, for the same reason
    closed = PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STEP_CLOSED)
    assert [(step.status, step.closed_with_plan, step.skip_reason) for step in plan.steps.all()] == [
        (StepStatus.SKIPPED, True, "The plan was ABORTED: customer churned.")] * 2
    assert sorted(entry.step_id for entry in closed) == sorted(step.step_id for step in plan.steps.all())
    assert {(entry.actor, entry.reason_code) for entry in closed} == {(f"user:{world.seller.pk}", "PLAN_ABORTED")}


def test_skip_an_optional_step(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF, ESCALATE))
    escalate = plan.steps.get(action_type=ESCALATE)
    skipped = services.step_skip(plan_id=plan.id, step_id=escalate.step_id, user=world.seller, reason="resolved")
    escalate.refresh_from_db()
    assert (escalate.status, escalate.skip_reason) == (StepStatus.SKIPPED, "resolved")
    assert skipped.version == plan.version + 1
    assert PlanLedgerEntry.objects.get(plan=plan).event_type == EventType.STEP_SKIPPED


@pytest.mark.parametrize(("step_status", "code"), [(StepStatus.DONE, "STEP_NOT_SKIPPABLE"),
                                                   (StepStatus.SKIPPED, "STEP_NOT_SKIPPABLE")])
def test_a_finished_step_cannot_be_skipped(world, step_status, code):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(ESCALATE,))
    step = plan.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(status=step_status)
    before = snapshot(plan.id)
    with pytest.raises(Conflict) as conflict:
        services.step_skip(plan_id=plan.id, step_id=step.step_id, user=world.seller, reason="x")
    assert conflict.value.code == code
    assert snapshot(plan.id) == before


def test_a_step_of_another_plan_is_not_found(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    other = make_plan(account=world.account, status=PlanStatus.DRAFT)
    with pytest.raises(NotFound):
        services.step_skip(plan_id=plan.id, step_id=other.steps.first().step_id, user=world.seller, reason="x")


def test_approve_a_step_waiting_for_a_person(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    meeting = plan.steps.get(action_type=MEETING)
    PlanStep.objects.filter(pk=meeting.pk).update(status=StepStatus.PENDING_APPROVAL)
    services.step_approve(plan_id=plan.id, step_id=meeting.step_id, user=world.seller)
    meeting.refresh_from_db()
    assert (meeting.status, meeting.approved_by) == (StepStatus.PENDING, world.seller)
    assert PlanLedgerEntry.objects.get(plan=plan).event_type == EventType.STEP_APPROVED
    with pytest.raises(Conflict) as conflict:
        services.step_approve(plan_id=plan.id, step_id=meeting.step_id, user=world.seller)
    assert conflict.value.code == "STEP_NOT_AWAITING_APPROVAL"
