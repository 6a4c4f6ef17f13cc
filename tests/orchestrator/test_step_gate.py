"""The gate before every step attempt (DESIGN §3.3): the owner an active member, the approval's facts
unchanged (account not transferred, renewal date, risk, config version), the plan not expired, the
action allowed by the plan type's config. A refusal holds the plan with the matching layer; what lifts
each layer (a transfer, a reapproval) lets it run on."""
import dataclasses
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator import engine, step_runner
from orchestrator.execution.models import ActionIntent
from plans import plan_types, policy, services
from plans.errors import Conflict, Reason
from plans.models import (
    EventType,
    Membership,
    PauseKind,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    Role,
)
from plans.schemas import PlanDraftInput, StepInput
from tests.factories import MembershipFactory, UserFactory, allow_autopilot

BRIEF = "PREP_RENEWAL_BRIEF"
NOW = timezone.now()


def running_plan(world):
    """Two briefs, the second after the first, that run on their own; the first attempt started."""
    allow_autopilot(world.tenant, BRIEF)
    first = uuid.uuid4()
    plan = services.plan_propose(
        account_id=world.account.id, plan_type="RENEWAL_DEFENSE", actor=world.seller,
        draft=PlanDraftInput(steps=[StepInput(step_id=first, action_type=BRIEF),
                                    StepInput(action_type=BRIEF, depends_on=[first])]))
    services.plan_approve(plan_id=plan.id, user=world.approver)
    (key,) = engine.advance_plan(plan.id)
    return plan, key


def second_step(plan) -> PlanStep:
    return plan.steps.get(sequence=1)


def open_layers(plan) -> list[tuple[str, str]]:
    return list(PauseLayer.objects.filter(plan=plan, lifted_at__isnull=True).order_by("id")
                .values_list("kind", "reason_code"))


def run_until_quiet(plan_id, keys):
    pending = list(keys)
    while pending:
        follow_up = step_runner.execute_step(pending.pop(0))
        pending += follow_up.keys
        if follow_up.advance:
            pending += engine.advance_plan(plan_id)


def test_an_owner_whose_login_is_disabled_holds_the_next_step_as_one_who_left(world):
    plan, key = running_plan(world)
    world.seller.is_active = False  # the membership stays; the person can no longer log in
    world.seller.save(update_fields=["is_active"])

    follow_up = step_runner.execute_step(key)

    assert follow_up.keys == []
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert open_layers(plan) == [(PauseKind.OWNER_INACTIVE, policy.PRECONDITION_FAILED)]


def test_owner_deactivated_then_transfer_then_reapproval(world):
    # given: the first step is under way when the owner leaves the tenant
    plan, key = running_plan(world)
    membership = Membership.objects.get(user=world.seller, tenant=world.tenant)
    services.membership_update(membership_id=membership.id, user=world.admin, is_active=False)

    # when the first step's outcome comes in and the next step is due
    follow_up = step_runner.execute_step(key)

    # then the next attempt does not start, and the plan is held by [OWNER_INACTIVE]
    assert follow_up.keys == []
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert open_layers(plan) == [(PauseKind.OWNER_INACTIVE, policy.PRECONDITION_FAILED)]
    assert not ActionIntent.objects.filter(plan=plan, step_id=second_step(plan).step_id).exists()
    added = PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.PAUSE_LAYER_ADDED).get()
    assert added.data["layer"]["evidence"]["step_id"] == str(second_step(plan).step_id)
    assert "no longer an active member" in added.explanation
    # a person's resume cannot lift it
    with pytest.raises(Conflict) as refused:
        services.plan_resume(plan_id=plan.id, user=world.approver)
    assert refused.value.code == services.PAUSE_LAYERS_REMAIN

    # when the account is handed to an active member: the stale approval holds it instead
    heir = UserFactory()
    MembershipFactory(user=heir, tenant=world.tenant, role=Role.SELLER)
    services.account_transfer(account_id=world.account.id, new_owner_id=heir.pk, user=world.approver,
                              reason="tests: a new owner")
    assert open_layers(plan) == [(PauseKind.APPROVAL_STALE, "OWNERSHIP_CHANGED")]
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED

    # when an approver reapproves it: it runs on, and completes
    services.plan_reapprove(plan_id=plan.id, user=world.approver)
    plan.refresh_from_db()
    assert (plan.plan_status, plan.approval_record["facts"]["owner_id"]) == (PlanStatus.ACTIVE, heir.pk)
    reapproved = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.PLAN_REAPPROVED)
    assert reapproved.data["changes"] == [{"field": "owner_id", "before": world.seller.pk, "after": heir.pk}]
    run_until_quiet(plan.id, engine.advance_plan(plan.id))
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.COMPLETED


def test_a_moved_renewal_date_holds_the_plan_with_the_drift_until_reapproved(world):
    plan, key = running_plan(world)
    before = world.account.renewal_date
    world.account.renewal_date = before + timedelta(days=21)
    world.account.save(update_fields=["renewal_date"])

    step_runner.execute_step(key)

    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    (layer,) = PauseLayer.objects.filter(plan=plan, lifted_at__isnull=True)
    assert (layer.kind, layer.reason_code) == (PauseKind.APPROVAL_STALE, policy.PRECONDITION_FAILED)
    assert layer.evidence["changed"] == [{"field": "renewal_date", "before": before.isoformat(),
                                          "after": world.account.renewal_date.isoformat()}]
    assert not ActionIntent.objects.filter(plan=plan, step_id=second_step(plan).step_id).exists()

    services.plan_reapprove(plan_id=plan.id, user=world.approver)
    run_until_quiet(plan.id, engine.advance_plan(plan.id))
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.COMPLETED


def test_a_new_config_version_leaves_a_running_plans_approval_standing(world):
    # A plan runs on the version it was approved with (issue 17): a deploy that adds a version stales nothing;
    # only migrate_plans moves a plan to it (tests/plans/test_plan_type_versions.py), and that stales it.
    plan, key = running_plan(world)
    with plan_types.catalogue_with(dataclasses.replace(plan_types.RENEWAL_DEFENSE, version=2)):
        step_runner.execute_step(key)

    assert not PauseLayer.objects.filter(plan=plan, lifted_at__isnull=True).exists()
    plan.refresh_from_db()
    assert (plan.plan_status, plan.plan_type_version) == (PlanStatus.ACTIVE, 1)


def test_a_plan_on_a_version_this_deploy_lacks_is_held_by_the_gate_when_advanced(world):
    # Its objective's signal types are unknown here: the advance's read of the facts still runs (compiled
    # without them), and the gate refuses the step.
    plan, key = running_plan(world)
    RevenuePlan.objects.filter(pk=plan.pk).update(plan_type_version=99)

    assert engine.advance_plan(plan.id) == []  # the first step is in flight: nothing to start
    step_runner.execute_step(key)  # it runs; the advance after it reads the facts and asks the gate

    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert (PauseKind.POLICY, "INVALID_PLAN_TYPE") in open_layers(plan)


def test_an_action_type_the_config_no_longer_allows_holds_the_plan_by_policy(world, monkeypatch):
    plan, key = running_plan(world)
    monkeypatch.setitem(plan_types.PLAN_TYPES, "RENEWAL_DEFENSE", dataclasses.replace(
        plan_types.RENEWAL_DEFENSE, allowed_action_types=("REQUEST_RENEWAL_MEETING", "ESCALATE_SUPPORT_RISK")))

    step_runner.execute_step(key)

    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert open_layers(plan) == [(PauseKind.POLICY, policy.STEP_ORDER_VIOLATION)]
    assert not ActionIntent.objects.filter(plan=plan, step_id=second_step(plan).step_id).exists()


# --- check_step, each check by hand -----------------------------------------------------------------


@dataclasses.dataclass
class FakePlan:
    plan_type: str = "RENEWAL_DEFENSE"
    plan_type_version: int = 1
    owner_id: int = 7
    expires_at: object = NOW + timedelta(days=1)


@dataclasses.dataclass
class FakeStep:
    action_type: str = BRIEF


DRIFT = ({"field": "owner_id", "before": 7, "after": 8},)

# (plan, step, facts) -> the layers and codes the gate holds the plan with, by hand.
STEP_GATE_CASES = [
    pytest.param(FakePlan(), FakeStep(), dict(owner_is_active_member=True), [], id="all-clear"),
    pytest.param(FakePlan(), FakeStep(), dict(owner_is_active_member=False),
                 [(PauseKind.OWNER_INACTIVE, "PRECONDITION_FAILED")], id="owner-inactive"),
    pytest.param(FakePlan(), FakeStep(), dict(owner_is_active_member=True, approval_drift=DRIFT),
                 [(PauseKind.APPROVAL_STALE, "PRECONDITION_FAILED")], id="facts-drifted"),
    pytest.param(FakePlan(expires_at=NOW), FakeStep(), dict(owner_is_active_member=True),
                 [(PauseKind.POLICY, "PLAN_EXPIRED")], id="expired"),
    pytest.param(FakePlan(), FakeStep(action_type="SEND_GIFT"), dict(owner_is_active_member=True),
                 [(PauseKind.POLICY, "STEP_ORDER_VIOLATION")], id="action-not-allowed"),
    pytest.param(FakePlan(plan_type="NOPE"), FakeStep(), dict(owner_is_active_member=True),
                 [(PauseKind.POLICY, "INVALID_PLAN_TYPE")], id="unknown-plan-type"),
    pytest.param(FakePlan(plan_type_version=99), FakeStep(), dict(owner_is_active_member=True),
                 [(PauseKind.POLICY, "INVALID_PLAN_TYPE")], id="unknown-plan-type-version"),
    pytest.param(FakePlan(), FakeStep(), dict(owner_is_active_member=False, approval_drift=DRIFT),
                 [(PauseKind.OWNER_INACTIVE, "PRECONDITION_FAILED"), (PauseKind.APPROVAL_STALE, "PRECONDITION_FAILED")],
                 id="inactive-and-drifted"),
]


@pytest.mark.parametrize(("plan", "step", "facts", "expected"), STEP_GATE_CASES)
def test_check_step(plan, step, facts, expected):
    result = policy.check_step(plan, step, policy.StepGateFacts(now=NOW, **facts))
    assert [(layer, reason.code) for layer, reason in result.holds] == expected
    assert result.valid == (not expected)
    assert all(isinstance(reason, Reason) and reason.detail for reason in result.reasons)


def test_the_gate_lists_its_checks():
    assert [(item.layer, item.check.__name__) for item in policy.STEP_CHECKS] == [
        (PauseKind.OWNER_INACTIVE, "check_step_owner_active"),
        (PauseKind.APPROVAL_STALE, "check_step_approval_holds"),
        (PauseKind.POLICY, "check_step_not_expired"),
        (PauseKind.POLICY, "check_step_action_allowed"),
    ]


def test_an_attempt_made_before_a_pause_is_not_resent_after_the_facts_drifted(world, settings):
    # given: a step attempt created (its message not run yet), then a person pauses the plan
    plan, key = running_plan(world)
    services.plan_pause(plan_id=plan.id, user=world.approver, reason="hold on")
    # while it is paused, the renewal date moves; then the person resumes it
    world.account.renewal_date = world.account.renewal_date + timedelta(days=21)
    world.account.save(update_fields=["renewal_date"])
    services.plan_resume(plan_id=plan.id, user=world.approver)
    # when the advance would re-send the attempt that never started (its message is deemed lost)
    settings.ORCHESTRATOR_REDELIVERY_SECONDS = 0
    resent = engine.advance_plan(plan.id)
    # then it is not sent: the plan is held by [APPROVAL_STALE], the attempt never ran
    assert resent == []
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert [kind for kind, _ in open_layers(plan)] == [PauseKind.APPROVAL_STALE]
    assert ActionIntent.objects.get(plan=plan, step_id=key.step_id, attempt=key.attempt).status == "PENDING"
    # and after a reapproval it is sent again and the plan completes
    services.plan_reapprove(plan_id=plan.id, user=world.approver)
    run_until_quiet(plan.id, engine.advance_plan(plan.id))
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.COMPLETED


def test_an_owner_back_in_the_tenant_lets_a_resume_lift_owner_inactive(world):
    # given: the owner left while a step was under way, so the next step did not start [OWNER_INACTIVE]
    plan, key = running_plan(world)
    membership = Membership.objects.get(user=world.seller, tenant=world.tenant)
    services.membership_update(membership_id=membership.id, user=world.admin, is_active=False)
    step_runner.execute_step(key)
    assert open_layers(plan) == [(PauseKind.OWNER_INACTIVE, policy.PRECONDITION_FAILED)]
    # when the same owner is made an active member again, then a person's resume lifts the layer
    services.membership_update(membership_id=membership.id, user=world.admin, is_active=True)
    services.plan_resume(plan_id=plan.id, user=world.approver)
    plan.refresh_from_db()
    assert (plan.plan_status, open_layers(plan)) == (PlanStatus.ACTIVE, [])
    run_until_quiet(plan.id, engine.advance_plan(plan.id))
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.COMPLETED


def test_a_resume_does_not_lift_owner_inactive_while_the_owner_is_still_gone(world):
    plan, key = running_plan(world)
    membership = Membership.objects.get(user=world.seller, tenant=world.tenant)
    services.membership_update(membership_id=membership.id, user=world.admin, is_active=False)
    step_runner.execute_step(key)
    with pytest.raises(Conflict) as refused:
        services.plan_resume(plan_id=plan.id, user=world.approver)
    assert refused.value.code == services.PAUSE_LAYERS_REMAIN
    assert open_layers(plan) == [(PauseKind.OWNER_INACTIVE, policy.PRECONDITION_FAILED)]


def test_an_old_message_for_an_attempt_made_before_a_pause_goes_through_the_gate(world, settings):
    # given: a step attempt created, its message still queued; the plan paused, the renewal date moved,
    # and the plan resumed — all before the message is delivered
    plan, key = running_plan(world)
    services.plan_pause(plan_id=plan.id, user=world.approver, reason="hold on")
    world.account.renewal_date = world.account.renewal_date + timedelta(days=21)
    world.account.save(update_fields=["renewal_date"])
    services.plan_resume(plan_id=plan.id, user=world.approver)
    # when the old message is delivered
    follow_up = step_runner.execute_step(key)
    # then the attempt does not run: the plan is held by [APPROVAL_STALE]
    assert follow_up.keys == []
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert [kind for kind, _ in open_layers(plan)] == [PauseKind.APPROVAL_STALE]
    assert ActionIntent.objects.get(plan=plan, step_id=key.step_id, attempt=key.attempt).status == "PENDING"
    # after a reapproval the advance re-sends it, and the plan completes
    services.plan_reapprove(plan_id=plan.id, user=world.approver)
    settings.ORCHESTRATOR_REDELIVERY_SECONDS = 0
    run_until_quiet(plan.id, engine.advance_plan(plan.id))
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.COMPLETED


def test_an_old_message_runs_after_a_pause_when_nothing_drifted(world):
    plan, key = running_plan(world)
    services.plan_pause(plan_id=plan.id, user=world.approver, reason="hold on")
    services.plan_resume(plan_id=plan.id, user=world.approver)
    run_until_quiet(plan.id, [key])
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.COMPLETED
