"""Autonomy in the orchestrator: the decision recorded on each attempt, budgets, opt-in, modes, settings writes."""
import pytest

from orchestrator import engine, outcomes
from orchestrator.autonomy import services as autonomy
from orchestrator.autonomy.models import ActionTypeAutonomy, AutonomyUsage, TenantAutonomy
from orchestrator.autonomy.policy import POLICY_VERSION
from orchestrator.execution.models import ActionIntent
from plans import services
from plans.errors import NotAllowed, NotFound, ValidationFailed
from plans.models import EventType, PlanLedgerEntry, PlanStatus, StepStatus
from tests.factories import AccountFactory, allow_autopilot, make_plan
from tests.orchestrator.test_engine import BRIEF, ESCALATE, run_until_quiet

pytestmark = pytest.mark.django_db


def brief_plan(world, *, account=None, action_types=(BRIEF,)):
    return make_plan(account=account or world.account, status=PlanStatus.ACTIVE, action_types=action_types,
                     approved_by=world.approver)


def awaiting(plan) -> PlanLedgerEntry:
    return PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.STEP_AWAITING_APPROVAL)


def test_an_opted_in_tenants_low_risk_step_runs_on_its_own_and_records_why(world):
    allow_autopilot(world.tenant, BRIEF)
    plan = brief_plan(world)
    run_until_quiet(plan.id)
    step = plan.steps.get()
    intent = ActionIntent.objects.get(plan=plan)
    assert step.status == StepStatus.AUTO_EXECUTED
    assert (intent.approved_by_id, intent.approving_policy) == (None, POLICY_VERSION)
    decision = intent.autonomy_decision
    assert (decision["decision"], decision["reason"]) == ("AUTO_EXECUTE", "AUTONOMY_ALLOWED")
    assert decision["facts"] == {"action_type": BRIEF, "risk_level": "LOW", "mode": "AUTO_EXECUTE",
                                 "opted_in": True, "killed_by": "", "budget_left": True, "approved_by_id": None,
                                 "approval_voided": "", "constraints": plan.constraints}
    started = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.STEP_ATTEMPT_STARTED)
    assert started.reason_code == "AUTONOMY_ALLOWED"
    assert started.data["autonomy_decision"] == decision


@pytest.mark.parametrize(("set_up", "reason"), [
    (lambda tenant: None, "TENANT_POLICY"),  # the default mode: APPROVAL_REQUIRED
    (lambda tenant: ActionTypeAutonomy.objects.create(tenant=tenant, action_type=BRIEF, mode="AUTO_EXECUTE"),
     "NOT_OPTED_IN"),
])
def test_without_mode_and_opt_in_a_step_waits_for_a_person_then_is_done(world, set_up, reason):
    set_up(world.tenant)
    plan = brief_plan(world)
    run_until_quiet(plan.id)
    step = plan.steps.get()
    assert step.status == StepStatus.PENDING_APPROVAL
    assert awaiting(plan).reason_code == reason
    assert not ActionIntent.objects.filter(plan=plan).exists()
    services.step_approve(plan_id=plan.id, step_id=step.step_id, user=world.seller)
    run_until_quiet(plan.id)
    step.refresh_from_db()
    intent = ActionIntent.objects.get(plan=plan)
    assert step.status == StepStatus.DONE
    assert (intent.approved_by_id, intent.autonomy_decision["reason"]) == (world.seller.pk, "APPROVED_BY_PERSON")


def test_a_high_risk_step_never_runs_on_its_own(world):
    allow_autopilot(world.tenant, ESCALATE)
    plan = brief_plan(world, action_types=(ESCALATE,))
    run_until_quiet(plan.id)
    assert plan.steps.get().status == StepStatus.PENDING_APPROVAL
    assert awaiting(plan).reason_code == "RISK_LEVEL_HIGH"


@pytest.mark.parametrize("mode", ["DISABLED", "PROPOSE_ONLY"])
def test_a_blocked_mode_pauses_the_plan_even_after_a_person_approved_the_step(world, mode):
    plan = brief_plan(world)
    run_until_quiet(plan.id)
    step = plan.steps.get()
    services.step_approve(plan_id=plan.id, step_id=step.step_id, user=world.seller)
    autonomy.action_type_autonomy_set(tenant_id=world.tenant.id, user=world.admin, action_type=BRIEF, mode=mode)
    run_until_quiet(plan.id)
    plan.refresh_from_db()
    assert (plan.plan_status, plan.stop_reason_code) == (PlanStatus.PAUSED, f"MODE_{mode}")
    assert not ActionIntent.objects.filter(plan=plan).exists()


def test_the_action_type_budget_lets_exactly_n_run_on_their_own(world):
    allow_autopilot(world.tenant, BRIEF, max_per_day=2)
    plans = [brief_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller)) for _ in range(5)]
    for plan in plans:
        run_until_quiet(plan.id)
    statuses = sorted(plan.steps.get().status for plan in plans)
    assert statuses == [StepStatus.AUTO_EXECUTED] * 2 + [StepStatus.PENDING_APPROVAL] * 3
    exhausted = PlanLedgerEntry.objects.filter(plan__in=plans, event_type=EventType.STEP_AWAITING_APPROVAL)
    assert {entry.reason_code for entry in exhausted} == {"BUDGET_EXHAUSTED"}
    assert AutonomyUsage.objects.get(tenant=world.tenant, account__isnull=True, action_type=BRIEF).used == 2


def test_the_account_budget_takes_both_units_or_neither(world):
    allow_autopilot(world.tenant, BRIEF, max_per_account_per_day=1)
    plan = brief_plan(world, action_types=(BRIEF, BRIEF))
    first, second = plan.steps.order_by("sequence")
    assert autonomy.decide_step(plan, first).decision.reason == "AUTONOMY_ALLOWED"
    assert autonomy.decide_step(plan, second).decision.reason == "BUDGET_EXHAUSTED"
    usage = {(row.account_id, row.action_type): row.used for row in AutonomyUsage.objects.all()}
    assert usage == {(world.account.id, ""): 1, (None, BRIEF): 1}  # the refused one took no type unit


def test_a_retry_of_an_autonomous_step_takes_no_second_unit(world, settings):
    settings.ORCHESTRATOR_STEP_RETRY_BASE_SECONDS = 0
    allow_autopilot(world.tenant, BRIEF, max_per_day=1)
    plan = brief_plan(world)
    assert len(engine.advance_plan(plan.id)) == 1
    ActionIntent.objects.filter(plan=plan).update(status="FAILED", failure_class="TRANSIENT", failure_reason="x")
    retry = outcomes.record_step_outcome(ActionIntent.objects.get(plan=plan).id)  # attempt 1 failed: retried
    run_until_quiet(plan.id, keys=retry.keys)
    step = plan.steps.get()
    assert (step.status, step.attempts) == (StepStatus.AUTO_EXECUTED, 2)
    assert AutonomyUsage.objects.get(tenant=world.tenant, account__isnull=True).used == 1


def test_settings_writes_are_ledgered_and_only_for_tenant_admins(world, other_world):
    tenant_id = world.tenant.id
    for user, error in ((world.approver, NotAllowed), (other_world.admin, NotFound)):
        with pytest.raises(error):
            autonomy.action_type_autonomy_set(tenant_id=tenant_id, user=user, action_type=BRIEF, mode="AUTO_EXECUTE")
        with pytest.raises(error):
            autonomy.tenant_autonomy_set(tenant_id=tenant_id, user=user, opted_in=True)
    with pytest.raises(ValidationFailed):
        autonomy.action_type_autonomy_set(tenant_id=tenant_id, user=world.admin, action_type=BRIEF, mode="YOLO")
    with pytest.raises(ValidationFailed):
        autonomy.action_type_autonomy_set(tenant_id=tenant_id, user=world.admin, action_type="NOPE", mode="DISABLED")
    with pytest.raises(ValidationFailed):
        autonomy.tenant_autonomy_set(tenant_id=tenant_id, user=world.admin, max_per_account_per_day=-1)
    assert not ActionTypeAutonomy.objects.exists()
    assert not TenantAutonomy.objects.exists()
    assert not PlanLedgerEntry.objects.filter(event_type=EventType.AUTONOMY_CHANGED).exists()

    autonomy.action_type_autonomy_set(tenant_id=tenant_id, user=world.admin, action_type=BRIEF, mode="AUTO_EXECUTE",
                                      max_per_day=5)
    autonomy.action_type_autonomy_set(tenant_id=tenant_id, user=world.admin, action_type=BRIEF, mode="AUTO_EXECUTE")
    autonomy.tenant_autonomy_set(tenant_id=tenant_id, user=world.admin, opted_in=True, max_per_account_per_day=2)
    autonomy.tenant_autonomy_set(tenant_id=tenant_id, user=world.admin, opted_in=False)
    entries = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.AUTONOMY_CHANGED)
    assert list(entries.order_by("chain_seq").values_list("reason_code", flat=True)) == [
        "ACTION_TYPE_AUTONOMY_CHANGED", "OPTED_IN", "LIMIT_CHANGED", "OPTED_OUT"]  # the no-op wrote nothing
    assert entries.first().data == {"action_type": BRIEF, "before": {"mode": "APPROVAL_REQUIRED", "max_per_day": 10},
                                    "after": {"mode": "AUTO_EXECUTE", "max_per_day": 5}}
    assert set(entries.values_list("actor", flat=True)) == {f"user:{world.admin.pk}"}
    settings = autonomy.autonomy_settings(tenant_id)
    assert (settings["opted_in"], settings["max_per_account_per_day"]) == (False, 2)
    brief = next(row for row in settings["action_types"] if row["action_type"] == BRIEF)
    assert (brief["mode"], brief["max_per_day"], brief["used_today"]) == ("AUTO_EXECUTE", 5, 0)
