"""Plan-type versions: a plan runs on the version it was approved with, a new version applies to the plans
approved after it, and `manage.py migrate_plans` moves in-flight plans explicitly (a dry-run report first;
refused where the new version makes the plan invalid; APPROVAL_STALE unless a tenant admin keeps the
approvals)."""
import dataclasses
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from orchestrator.execution.models import ConnectorConfig
from plans import ledger, plan_types, services
from plans.models import EventType, PauseKind, PauseLayer, PlanLedgerEntry, PlanStatus, StepStatus
from plans.plan_types import RENEWAL_DEFENSE, catalogue_with, get_plan_type_config, plan_type_config_for
from plans.schemas import PlanDraftInput, StepInput
from plans.services import approvals
from plans.services.layers import open_layers
from tests.factories import make_plan
from tests.orchestrator.test_engine import approved_plan, run_until_quiet

BRIEF, ESCALATE = "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"
# v2 of RENEWAL_DEFENSE as a later deploy might ship it: more patience with a failing connector.
V2 = dataclasses.replace(RENEWAL_DEFENSE, version=2, retry_limit=RENEWAL_DEFENSE.retry_limit + 2)


@pytest.fixture
def v2():
    with catalogue_with(V2) as config:
        yield config


def migrate(*args) -> str:
    out = StringIO()
    call_command("migrate_plans", *args, stdout=out)
    return out.getvalue()


def entries(plan, event_type) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(plan=plan, event_type=event_type).order_by("chain_seq"))


def test_the_catalogue_keeps_every_version_and_the_test_version_goes_away_afterwards():
    with catalogue_with(V2):
        assert plan_types.plan_type_versions("RENEWAL_DEFENSE") == [1, 2]
        assert get_plan_type_config("RENEWAL_DEFENSE") is V2
        assert get_plan_type_config("RENEWAL_DEFENSE", 1) is RENEWAL_DEFENSE
        assert get_plan_type_config("RENEWAL_DEFENSE", 3) is None
    assert plan_types.plan_type_versions("RENEWAL_DEFENSE") == [1]
    assert get_plan_type_config("RENEWAL_DEFENSE") is RENEWAL_DEFENSE


def test_a_plan_approved_on_v1_keeps_v1s_rules_after_v2_is_added(world, v2):
    # given: approved before v2 existed (here: stamped v1, as the approval then did)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,), plan_type_version=1)
    # then: it runs on v1's retry limit; v2 is what a new approval gets
    assert plan_type_config_for(plan).retry_limit == RENEWAL_DEFENSE.retry_limit
    assert get_plan_type_config(plan.plan_type, plan.plan_type_version).version == 1
    assert get_plan_type_config(plan.plan_type).retry_limit == V2.retry_limit


def test_a_draft_proposed_before_v2_is_approved_on_v2(world):
    # given: proposed while v1 was the latest
    draft = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                  draft=_steps(BRIEF), actor=world.seller)
    assert draft.plan_type_version == 1
    # when: v2 is deployed, then the draft is approved
    with catalogue_with(V2):
        plan = services.plan_approve(plan_id=draft.id, user=world.admin)
        # then: the approval stamps v2, and its facts say so
        assert plan.plan_type_version == 2
        assert plan.approval_record["facts"]["plan_type_version"] == 2
        assert plan_type_config_for(plan).retry_limit == V2.retry_limit


def test_a_reapproval_keeps_the_version_the_plan_runs_on(world, v2):
    # given: a plan on v1 held by a stale approval (its renewal date moved, say)
    plan = plan_on_v1(world, PlanStatus.PAUSED)
    PauseLayer.objects.create(plan=plan, kind=PauseKind.APPROVAL_STALE, reason_code="PRECONDITION_FAILED",
                              explanation="The renewal date moved.", set_by="system:tests", set_at=timezone.now())
    # when
    services.plan_reapprove(plan_id=plan.id, user=world.approver)
    # then: still on v1 (moving it is migrate_plans' explicit, checked job), and the new record says v1
    plan.refresh_from_db()
    assert plan.plan_type_version == 1
    assert plan.approval_record["facts"]["plan_type_version"] == 1


def test_migrate_plans_prints_a_dry_run_report_then_moves_the_plan(world, v2):
    # given: an ACTIVE plan approved on v1
    plan = plan_on_v1(world, PlanStatus.ACTIVE)
    # when: a dry run
    report = migrate("--plan-type", "RENEWAL_DEFENSE", "--to", "2", "--dry-run")
    # then: the report names the plan and what changes; nothing changed
    assert "DRY RUN" in report
    assert f"WOULD_MOVE plan {plan.id}" in report
    assert f"retry_limit: {RENEWAL_DEFENSE.retry_limit} -> {V2.retry_limit}" in report
    assert "1 would move, 0 refused" in report
    plan.refresh_from_db()
    assert (plan.plan_type_version, plan.plan_status) == (1, PlanStatus.ACTIVE)
    assert entries(plan, EventType.PLAN_TYPE_MIGRATED) == []
    assert open_layers(plan) == []
    # when: the real run
    report = migrate("--plan-type", "RENEWAL_DEFENSE", "--to", "2")
    # then: moved, ledgered, and held until a reapproval
    assert f"MOVED      plan {plan.id}" in report
    assert "1 moved, 0 refused" in report
    plan.refresh_from_db()
    assert (plan.plan_type_version, plan.plan_status) == (2, PlanStatus.PAUSED)
    [moved] = entries(plan, EventType.PLAN_TYPE_MIGRATED)
    assert (moved.actor, moved.data["from_version"], moved.data["to_version"], moved.data["keep_approvals"]) == (
        "system:migrate_plans", 1, 2, False)
    assert {"field": "retry_limit", "before": RENEWAL_DEFENSE.retry_limit, "after": V2.retry_limit} in moved.data[
        "changes"]
    [layer] = open_layers(plan)
    assert (layer.kind, layer.reason_code) == (PauseKind.APPROVAL_STALE, "PLAN_TYPE_MIGRATED")
    assert layer.evidence["changed"] == [{"field": "plan_type_version", "before": 1, "after": 2}]
    assert ledger.verify_ledger(plan_id=plan.id).ok
    # and: a reapproval lets it run on v2's rules
    services.plan_reapprove(plan_id=plan.id, user=world.approver)
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ACTIVE
    assert plan_type_config_for(plan).retry_limit == V2.retry_limit
    # and: a second run has nothing left to move
    assert "0 moved, 0 refused, 0 in flight" in migrate("--plan-type", "RENEWAL_DEFENSE", "--to", "2")


def test_a_plan_the_new_version_makes_invalid_is_refused_with_the_reasons_and_nothing_changes(world):
    # given: v2 no longer allows the escalation this plan has
    plan = plan_on_v1(world, PlanStatus.ACTIVE, action_types=(BRIEF, ESCALATE))
    narrower = dataclasses.replace(V2, allowed_action_types=("REQUEST_RENEWAL_MEETING", BRIEF))
    out = StringIO()
    with catalogue_with(narrower), pytest.raises(CommandError, match="1 plan"):
        call_command("migrate_plans", "--plan-type", "RENEWAL_DEFENSE", "--to", "2", stdout=out)
    # then
    assert f"REFUSED    plan {plan.id}" in out.getvalue()
    assert "STEP_ORDER_VIOLATION" in out.getvalue()
    assert ESCALATE in out.getvalue()
    plan.refresh_from_db()
    assert (plan.plan_type_version, plan.plan_status) == (1, PlanStatus.ACTIVE)
    assert entries(plan, EventType.PLAN_TYPE_MIGRATED) == []
    assert open_layers(plan) == []


def test_keep_approvals_takes_a_tenant_admin(world, v2):
    plan = plan_on_v1(world, PlanStatus.ACTIVE)
    with pytest.raises(CommandError, match="--as"):
        migrate("--plan-type", "RENEWAL_DEFENSE", "--to", "2", "--keep-approvals")
    # a plan approver may not keep approvals: refused, nothing changed
    out = StringIO()
    with pytest.raises(CommandError, match="refused"):
        call_command("migrate_plans", "--plan-type", "RENEWAL_DEFENSE", "--to", "2", "--keep-approvals",
                     "--as", world.approver.username, stdout=out)
    assert "NOT_ALLOWED" in out.getvalue() or "TENANT_ADMIN" in out.getvalue()
    plan.refresh_from_db()
    assert plan.plan_type_version == 1
    # the tenant admin may: moved, no layer, and the kept approval's facts name v2 (no drift for the step gate)
    migrate("--plan-type", "RENEWAL_DEFENSE", "--to", "2", "--keep-approvals", "--as", world.admin.username)
    plan.refresh_from_db()
    assert (plan.plan_type_version, plan.plan_status) == (2, PlanStatus.ACTIVE)
    assert open_layers(plan) == []
    [moved] = entries(plan, EventType.PLAN_TYPE_MIGRATED)
    assert (moved.actor, moved.data["keep_approvals"]) == (f"user:{world.admin.pk}", True)
    assert approvals.fact_changes(plan.approval_record["facts"], approvals.approval_facts(plan)) == []


def test_an_unknown_version_is_a_clear_error(world):
    with pytest.raises(CommandError, match="no version 7"):
        migrate("--plan-type", "RENEWAL_DEFENSE", "--to", "7")


def plan_on_v1(world, status, *, action_types=(BRIEF,)):
    """A plan approved on v1 by the tenant admin, with the approval's record as the approval wrote it."""
    plan = make_plan(account=world.account, status=status, action_types=action_types, plan_type_version=1,
                     approved_by=world.admin)
    plan.approval_record = approvals.plan_record(plan, list(plan.steps.all()), approved_by_id=world.admin.pk,
                                                 approved_at=plan.approved_at)
    plan.save(update_fields=["approval_record"])
    return plan


def _steps(*action_types):
    return PlanDraftInput(steps=[StepInput(step_id=uuid.uuid4(), action_type=action_type)
                                 for action_type in action_types])


# --- the engine runs a plan on its version ------------------------------------------------------------


@pytest.fixture
def failing_crm(world, crm, settings):
    """The tenant's CRM refuses every escalation (400: each attempt fails at once, no tries within it)."""
    settings.ORCHESTRATOR_STEP_RETRY_BASE_SECONDS = 0
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"base_url": crm.base_url, "api_key": "k", "timeout_seconds": 0.5})
    crm.state.scripted = [400] * 50
    return crm


def escalate_until_it_fails(world, plan):
    run_until_quiet(plan.id)
    escalate = plan.steps.get(action_type=ESCALATE)
    services.step_approve(plan_id=plan.id, step_id=escalate.step_id, user=world.admin)
    run_until_quiet(plan.id)
    plan.refresh_from_db()
    escalate.refresh_from_db()
    return escalate


def test_a_plan_approved_on_v1_fails_at_v1s_retry_limit_after_v2_is_added(world, failing_crm):
    # given: approved on v1 (limit 3); then v2 (limit 5) is deployed
    plan = approved_plan(world, ESCALATE)
    assert plan.plan_type_version == 1
    with catalogue_with(V2):
        # when: its escalation keeps failing
        escalate = escalate_until_it_fails(world, plan)
    # then: it stopped at v1's limit, and the plan is paused by it
    assert (escalate.status, escalate.attempts) == (StepStatus.FAILED, RENEWAL_DEFENSE.retry_limit)
    assert plan.plan_status == PlanStatus.PAUSED
    assert [layer.kind for layer in open_layers(plan)] == [PauseKind.RETRY_LIMIT]


def test_a_plan_approved_after_v2_is_added_runs_on_v2s_retry_limit(world, failing_crm):
    with catalogue_with(V2):
        plan = approved_plan(world, ESCALATE)
        assert plan.plan_type_version == 2
        escalate = escalate_until_it_fails(world, plan)
    assert (escalate.status, escalate.attempts) == (StepStatus.FAILED, V2.retry_limit)


def test_a_moved_approved_plan_is_held_by_its_stale_approval_at_its_first_step(world, v2):
    # given: APPROVED on v1, not yet running (a layer holds only a running plan)
    plan = plan_on_v1(world, PlanStatus.APPROVED)
    # when
    migrate("--plan-type", "RENEWAL_DEFENSE", "--to", "2")
    plan.refresh_from_db()
    assert (plan.plan_type_version, plan.plan_status, open_layers(plan)) == (2, PlanStatus.APPROVED, [])
    run_until_quiet(plan.id)
    # then: the step gate finds the approval given on v1 and holds the plan until a reapproval
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    [layer] = open_layers(plan)
    assert layer.kind == PauseKind.APPROVAL_STALE
    assert layer.evidence["changed"] == [{"field": "plan_type_version", "before": 1, "after": 2}]
