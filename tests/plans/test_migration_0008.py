"""The data migration plans/0008 (existing rows under the pause layers and bound approvals): its
forward function run on rows as the code before the layers left them, then the app acting on them."""
from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.utils import timezone

from plans import services
from plans.errors import Conflict
from plans.models import (
    EventType,
    KillSwitch,
    PauseKind,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    StepStatus,
)
from plans.proposals import renewal_defense_draft
from plans.schemas import PlanDraftInput, StepInput
from plans.services import approvals
from tests.factories import AccountFactory, make_plan

migration = import_module("plans.migrations.0008_pause_layers_from_stop_reasons")
ESCALATE = "ESCALATE_SUPPORT_RISK"
WITH_ESCALATION = ("REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", ESCALATE)


def run_migration() -> None:
    migration.forward(apps, schema_editor=None)


def paused(world, code: str, detail: str = "", **fields) -> RevenuePlan:
    """A PAUSED plan as the code before the layers left it: a stop reason, no layer."""
    account = AccountFactory(tenant=world.tenant, owner=world.seller)
    return make_plan(account=account, status=PlanStatus.PAUSED, action_types=WITH_ESCALATION,
                     paused_at=timezone.now() - timedelta(hours=1), stop_reason_code=code,
                     stop_reason_detail=detail, created_by="system:tests", **fields)


def plan_rows() -> dict:
    return {plan["id"]: {name: value for name, value in plan.items() if name != "approval_record"}
            for plan in RevenuePlan.objects.values()}


def layers_of(plan) -> list[tuple]:
    return list(PauseLayer.objects.filter(plan=plan, lifted_at__isnull=True)
                .values_list("kind", "scope", "reason_code", "set_by", "evidence"))


def test_each_paused_plan_gets_one_layer_from_its_stop_reason(world):
    # given: a PAUSED plan for every stop reason the code before the layers wrote
    KillSwitch.objects.create(tenant=world.tenant, action_type="", engaged=True, reason="incident")
    KillSwitch.objects.create(tenant=world.tenant, action_type=ESCALATE, engaged=True, reason="support outage")
    KillSwitch.objects.create(tenant=world.tenant, action_type="PREP_RENEWAL_BRIEF", engaged=False, reason="over")
    by_person = paused(world, "PAUSED_BY_USER", "Customer on holiday")
    by_tenant_switch = paused(world, "KILL_SWITCH", "Execution is switched off (tenant kill switch); resume ...")
    by_action_switch = paused(world, "KILL_SWITCH", f"{ESCALATE} may not run: kill switch for {ESCALATE} is on.")
    by_released_switch = paused(world, "KILL_SWITCH", "PREP_RENEWAL_BRIEF was not sent: kill switch for "
                                                      "PREP_RENEWAL_BRIEF is on.")
    by_global_switch = paused(world, "KILL_SWITCH", "Execution is switched off (global kill switch "
                                                    "REVPLAN_EXECUTION_DISABLED); resume the plan once it is back on.")
    by_retry_limit = paused(world, "RETRY_LIMIT_EXCEEDED", "ESCALATE_SUPPORT_RISK failed 3 times")
    failed = by_retry_limit.steps.get(action_type=ESCALATE)
    PlanStep.objects.filter(pk=failed.pk).update(status=StepStatus.FAILED, attempts=3)
    by_retry_limit_skipped_since = paused(world, "RETRY_LIMIT_EXCEEDED", "ESCALATE_SUPPORT_RISK failed 3 times")
    by_transfer = paused(world, "OWNERSHIP_CHANGED", "The account moved to a new owner.")
    by_autonomy = paused(world, "MODE_DISABLED", "ESCALATE_SUPPORT_RISK is disabled for this tenant.")
    not_paused = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    plans_before = plan_rows()
    ledger_before = PlanLedgerEntry.objects.count()

    # when
    run_migration()

    # then: one layer each, by hand from the migration's table
    def only(plan, kind, scope=""):
        return [(kind, scope, plan.stop_reason_code, "system:migration", {"migrated_from": plan.stop_reason_code})]

    assert layers_of(by_person) == only(by_person, PauseKind.PERSON)
    assert layers_of(by_tenant_switch) == only(by_tenant_switch, PauseKind.KILL_SWITCH)
    assert layers_of(by_action_switch) == only(by_action_switch, PauseKind.KILL_SWITCH, ESCALATE)
    # its switch is released already, and a release is no flip twice: a person's resume lifts it
    assert layers_of(by_released_switch) == only(by_released_switch, PauseKind.POLICY)
    assert layers_of(by_global_switch) == only(by_global_switch, PauseKind.GLOBAL_KILL_SWITCH)
    assert layers_of(by_retry_limit) == only(by_retry_limit, PauseKind.RETRY_LIMIT, str(failed.step_id))
    assert layers_of(by_retry_limit_skipped_since) == only(by_retry_limit_skipped_since, PauseKind.POLICY)
    assert layers_of(by_transfer) == only(by_transfer, PauseKind.APPROVAL_STALE)
    assert layers_of(by_autonomy) == only(by_autonomy, PauseKind.POLICY)
    assert layers_of(not_paused) == []
    layer = PauseLayer.objects.get(plan=by_person)
    assert (layer.explanation, layer.set_at) == ("Customer on holiday", by_person.paused_at)
    # and nothing else changed (but the approvals' digests, below): no plan moved, no ledger entry was written
    assert plan_rows() == plans_before
    assert PlanLedgerEntry.objects.count() == ledger_before

    # when: it runs again (a re-applied migration)
    run_migration()
    # then: still one layer each
    assert PauseLayer.objects.filter(plan__tenant=world.tenant).count() == 9


def test_the_migrated_layers_are_lifted_by_what_lifts_their_cause(world):
    # given
    KillSwitch.objects.create(tenant=world.tenant, action_type="", engaged=True, reason="incident")
    by_person = paused(world, "PAUSED_BY_USER", "Customer on holiday")
    by_switch = paused(world, "KILL_SWITCH", "Execution is switched off (tenant kill switch).")
    by_retry_limit = paused(world, "RETRY_LIMIT_EXCEEDED", "ESCALATE_SUPPORT_RISK failed 3 times")
    failed = by_retry_limit.steps.get(action_type=ESCALATE)
    PlanStep.objects.filter(pk=failed.pk).update(status=StepStatus.FAILED, attempts=3)
    run_migration()

    # a resume is refused for the failed step, and lifts nothing
    with pytest.raises(Conflict) as refused:
        services.plan_resume(plan_id=by_retry_limit.id, user=world.admin)
    assert refused.value.code == "STEP_FAILED"
    # releasing the switch runs its plan on at once (in the flip's transaction)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="over")
    assert RevenuePlan.objects.get(pk=by_switch.id).plan_status == PlanStatus.ACTIVE
    # a person's resume lifts a person's pause
    services.plan_resume(plan_id=by_person.id, user=world.seller)
    assert RevenuePlan.objects.get(pk=by_person.id).plan_status == PlanStatus.ACTIVE
    # skipping the optional failed step lifts its layer
    services.step_skip(plan_id=by_retry_limit.id, step_id=failed.step_id, user=world.seller, reason="by phone")
    assert RevenuePlan.objects.get(pk=by_retry_limit.id).plan_status == PlanStatus.ACTIVE
    lifted = PlanLedgerEntry.objects.filter(plan__tenant=world.tenant, event_type=EventType.PAUSE_LAYER_LIFTED)
    assert sorted(lifted.values_list("reason_code", flat=True)) == sorted(
        [PauseKind.PERSON, PauseKind.KILL_SWITCH, PauseKind.RETRY_LIMIT])


def test_existing_approvals_get_the_digest_of_their_content_and_stay_current(world):
    # given: an ACTIVE plan approved (by the code before digests) with a step a person approved, and a DRAFT
    approved_at = timezone.now() - timedelta(days=1)
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=WITH_ESCALATION,
                       approved_at=approved_at, approved_by=world.approver)
    step = active.steps.get(action_type=ESCALATE)
    PlanStep.objects.filter(pk=step.pk).update(approved_at=approved_at, approved_by=world.admin,
                                               parameters={"severity": "high", "seats": 1e20})
    draft = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.DRAFT)
    assert RevenuePlan.objects.get(pk=active.pk).approval_record == {}

    # when
    run_migration()

    # then: the records hash what plans.services.approvals hashes, so the app finds them CURRENT
    active = RevenuePlan.objects.select_related("account").get(pk=active.pk)
    steps = list(active.steps.all())
    step = next(s for s in steps if s.pk == step.pk)
    assert active.approval_record["digest"] == approvals.digest(approvals.plan_content(active, steps))
    assert active.approval_record["facts"] == approvals.approval_facts(active)
    assert approvals.plan_approval(active, steps) == {
        "state": approvals.CURRENT, "approved_by": world.approver.pk, "approved_at": approved_at.isoformat(),
        "changed_since": []}
    assert step.approval_record["digest"] == approvals.digest(approvals.step_content(step))
    assert approvals.step_approval(step)["state"] == approvals.CURRENT
    assert approvals.step_approved_by(step) == world.admin.pk
    # a step nobody approved and a plan never approved get no record
    assert [s.approval_record for s in steps if s.pk != step.pk] == [{}, {}]
    assert RevenuePlan.objects.get(pk=draft.pk).approval_record == {}


def test_a_step_approval_older_than_its_plans_last_edit_is_voided_not_blessed(world):
    # given: a step a person approved, then (the old hole) the plan revised and its DRAFT edited
    services_plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                          actor=world.seller, draft=renewal_defense_draft(signal_types=set()))
    step = services_plan.steps.get(action_type="PREP_RENEWAL_BRIEF")
    approved_at = timezone.now() - timedelta(days=2)
    PlanStep.objects.filter(pk=step.pk).update(approved_at=approved_at, approved_by=world.approver)
    untouched = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller),
                          status=PlanStatus.ACTIVE, action_types=WITH_ESCALATION)
    kept = untouched.steps.get(action_type=ESCALATE)
    PlanStep.objects.filter(pk=kept.pk).update(approved_at=approved_at, approved_by=world.admin)
    RevenuePlan.objects.filter(pk=services_plan.pk).update(approval_record={})
    services.plan_edit(plan_id=services_plan.id, user=world.seller,
                       draft=PlanDraftInput(objective="Edited after the step approval",
                                            steps=[StepInput(step_id=s.step_id, action_type=s.action_type,
                                                             depends_on=s.depends_on, parameters=s.parameters)
                                                   for s in services_plan.steps.order_by("sequence")]))
    PlanStep.objects.filter(pk=step.pk).update(approval_record={}, approved_at=approved_at,
                                               approved_by=world.approver)
    # when
    run_migration()
    # then: the approval given before the edit is void (a person must approve the step again);
    # one on a plan never edited since is kept, with its digest
    step.refresh_from_db()
    kept.refresh_from_db()
    assert (step.approved_at, step.approved_by_id) == (None, None)
    assert "voided" in step.approval_record
    assert approvals.step_approved_by(step) is None
    assert approvals.step_approved_by(kept) == world.admin.pk
