"""Autonomy with real workers: what runs on its own, what waits for a person, and budgets under concurrency."""
import time
import uuid

import pytest
from django.test import override_settings

from orchestrator import tasks
from orchestrator.autonomy import review
from orchestrator.autonomy import services as autonomy
from orchestrator.autonomy.models import ActionTypeAutonomy, AutonomyProposal, AutonomyUsage, ShadowDecision
from orchestrator.execution.models import ActionIntent, ActionRoute
from plans import ledger, services
from plans.models import EventType, PlanLedgerEntry, PlanStatus, PlanStep, StepStatus
from plans.schemas import PlanDraftInput, StepInput
from revplan import celery_app
from tests.conftest import build_world
from tests.factories import AccountFactory
from tests.integration.harness import wait_for
from tests.integration.test_plan_runs import BRIEF, ESCALATE, MEETING, plan_status, step_status, use_calendar

BUDGET = 5


def opt_in(world, *, brief_per_day: int) -> None:
    """Through the audited services, as a tenant admin would."""
    autonomy.tenant_autonomy_set(tenant_id=world.tenant.id, user=world.admin, opted_in=True,
                                 max_per_account_per_day=100)
    for action_type in (BRIEF, ESCALATE):  # the escalation asks for AUTO_EXECUTE too: HIGH risk must not get it
        autonomy.action_type_autonomy_set(tenant_id=world.tenant.id, user=world.admin, action_type=action_type,
                                          mode="AUTO_EXECUTE", max_per_day=brief_per_day)


def approved(world, account, *action_types):
    steps, previous = [], None
    for action_type in action_types:
        step = StepInput(step_id=uuid.uuid4(), action_type=action_type, depends_on=[previous] if previous else [])
        steps.append(step)
        previous = step.step_id
    plan = services.plan_propose(account_id=account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=PlanDraftInput(steps=steps), actor=world.seller)
    return services.plan_approve(plan_id=plan.id, user=world.admin)  # HIGH-risk plans need a tenant admin


def awaiting_reason(plan, action_type) -> str:
    step = PlanStep.objects.get(plan=plan, action_type=action_type)
    return PlanLedgerEntry.objects.get(plan=plan, step_id=step.step_id,
                                       event_type=EventType.STEP_AWAITING_APPROVAL).reason_code


@pytest.mark.timeout(120)
def test_low_risk_runs_on_its_own_external_contact_and_high_risk_wait_for_a_person(cluster, radicale):
    # given: an opted-in tenant; the meeting contacts the customer, the escalation is HIGH risk
    world = build_world()
    use_calendar(world, radicale)
    ActionRoute.objects.create(tenant=world.tenant, action_type=ESCALATE, connector="internal")
    opt_in(world, brief_per_day=10)
    plan = approved(world, world.account, MEETING, BRIEF, ESCALATE)
    cluster.start_worker()
    cluster.start_beat()
    # when: the meeting waits for a person, who approves it
    wait_for(lambda: step_status(plan, MEETING) == StepStatus.PENDING_APPROVAL, timeout=30,
             what="the meeting to wait")
    assert awaiting_reason(plan, MEETING) == "EXTERNAL_CONTACT"
    services.step_approve(plan_id=plan.id, step_id=PlanStep.objects.get(plan=plan, action_type=MEETING).step_id,
                          user=world.seller)
    # then: the brief runs on its own; the escalation waits, and keeps waiting over several ticks
    wait_for(lambda: step_status(plan, ESCALATE) == StepStatus.PENDING_APPROVAL, timeout=30,
             what="the escalation to wait")
    assert (step_status(plan, MEETING), step_status(plan, BRIEF)) == (StepStatus.DONE, StepStatus.AUTO_EXECUTED)
    assert awaiting_reason(plan, ESCALATE) == "RISK_LEVEL_HIGH"
    time.sleep(3)  # three ticks
    assert step_status(plan, ESCALATE) == StepStatus.PENDING_APPROVAL
    assert not ActionIntent.objects.filter(plan=plan, action_type=ESCALATE).exists()
    # when: a person approves it
    services.step_approve(plan_id=plan.id, step_id=PlanStep.objects.get(plan=plan, action_type=ESCALATE).step_id,
                          user=world.approver)
    # then
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=30, what="the plan to complete")
    assert step_status(plan, ESCALATE) == StepStatus.DONE
    intents = {intent.action_type: intent for intent in ActionIntent.objects.filter(plan=plan)}
    assert intents[BRIEF].approved_by_id is None
    assert intents[BRIEF].autonomy_decision["reason"] == "AUTONOMY_ALLOWED"
    assert intents[MEETING].approved_by_id == world.seller.pk
    assert intents[ESCALATE].approved_by_id == world.approver.pk
    assert ledger.verify_ledger(plan_id=plan.id).ok


@pytest.mark.timeout(150)
def test_a_budget_of_n_lets_exactly_n_run_on_their_own_when_4n_are_due_across_two_workers(cluster):
    # given: 4 x N approved one-brief plans (one account each), a daily budget of N for the brief
    world = build_world()
    opt_in(world, brief_per_day=BUDGET)
    plans = [approved(world, AccountFactory(tenant=world.tenant, owner=world.seller), BRIEF)
             for _ in range(4 * BUDGET)]
    # when: two worker processes and a beat take them all at once
    workers = [cluster.start_worker("w1", concurrency=1), cluster.start_worker("w2", concurrency=1)]
    cluster.start_beat()
    steps = PlanStep.objects.filter(plan__in=plans)

    def settled() -> bool:
        return steps.filter(status__in=[StepStatus.AUTO_EXECUTED, StepStatus.PENDING_APPROVAL]).count() == len(plans)

    wait_for(settled, timeout=90, what="every brief to run or wait")
    time.sleep(2)  # nothing else happens on later ticks
    # then: exactly N ran on their own; the rest wait for a person, with the reason why
    statuses = list(steps.values_list("status", flat=True))
    assert statuses.count(StepStatus.AUTO_EXECUTED) == BUDGET
    assert statuses.count(StepStatus.PENDING_APPROVAL) == 3 * BUDGET
    assert ActionIntent.objects.filter(plan__in=plans).count() == BUDGET
    waiting = PlanLedgerEntry.objects.filter(plan__in=plans, event_type=EventType.STEP_AWAITING_APPROVAL)
    assert list(waiting.values_list("reason_code", flat=True).distinct()) == ["BUDGET_EXHAUSTED"]
    assert AutonomyUsage.objects.get(tenant=world.tenant, account__isnull=True, action_type=BRIEF).used == BUDGET
    # ... and both worker processes took part
    for worker in workers:
        assert "orchestrator.advance_plans" in worker.log_path.read_text(errors="replace")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("cluster_env", [{"REVPLAN_PROMOTION_DECISIONS": "3", "REVPLAN_PROMOTION_AGREEMENT": "0.6"}])
@override_settings(REVPLAN_PROMOTION_DECISIONS=3, REVPLAN_PROMOTION_AGREEMENT=0.6)  # the same here (the confirm)
def test_shadow_mode_on_real_workers_records_the_policy_beside_people_and_earns_a_promotion(cluster):
    # given: the brief in SHADOW mode in a tenant that has not opted in yet; four approved one-brief plans
    world = build_world()
    autonomy.action_type_autonomy_set(tenant_id=world.tenant.id, user=world.admin, action_type=BRIEF, mode="SHADOW")
    plans = [approved(world, AccountFactory(tenant=world.tenant, owner=world.seller), BRIEF) for _ in range(4)]
    cluster.start_worker()
    cluster.start_beat()
    steps = PlanStep.objects.filter(plan__in=plans)
    # when: the workers take them: each waits for a person, nothing runs on its own
    wait_for(lambda: steps.filter(status=StepStatus.PENDING_APPROVAL).count() == 4, timeout=30,
             what="every brief to wait for a person")
    assert not ActionIntent.objects.filter(plan__in=plans).exists()
    rows = ShadowDecision.objects.filter(plan__in=plans)
    assert sorted(rows.values_list("would_run", "reason")) == [(True, "AUTONOMY_ALLOWED")] * 4
    # people decide: three approve as is, one aborts
    for plan in plans[:3]:
        services.step_approve(plan_id=plan.id, step_id=plan.steps.get().step_id, user=world.seller)
    services.plan_abort(plan_id=plans[3].id, user=world.seller, reason="the account was sold")
    wait_for(lambda: all(plan_status(plan) == PlanStatus.COMPLETED for plan in plans[:3]), timeout=30,
             what="the approved briefs to run")
    for intent in ActionIntent.objects.filter(plan__in=plans):
        assert intent.approved_by_id == world.seller.pk
        assert intent.autonomy_decision["shadow"]["decision"] == "AUTO_EXECUTE"  # what it would have done
    # when: the daily review runs on the worker
    with celery_app.connection_for_write(cluster.env["CELERY_BROKER_URL"]) as broker:
        tasks.autonomy_review.apply_async(connection=broker)
    wait_for(lambda: AutonomyProposal.objects.filter(tenant=world.tenant).exists(), timeout=30,
             what="the review to propose the promotion")
    # then: the people's decisions are stored beside the policy's, 3 of 4 agreed: proposed, not applied
    assert sorted(rows.values_list("person_decision", flat=True)) == ["ABORTED", "APPROVED", "APPROVED", "APPROVED"]
    proposal = AutonomyProposal.objects.get(tenant=world.tenant)
    last_three = list(rows.order_by("-decided_at", "-pk").values_list("person_decision", flat=True)[:3])
    assert (proposal.evidence["decisions"], proposal.evidence["agreed"]) == (3, last_three.count("APPROVED"))
    assert ActionTypeAutonomy.objects.get(tenant=world.tenant, action_type=BRIEF).mode == "SHADOW"
    # when: the admin opts in and confirms; then the next brief runs on its own
    autonomy.tenant_autonomy_set(tenant_id=world.tenant.id, user=world.admin, opted_in=True)
    review.proposal_decide(proposal_id=proposal.id, user=world.admin, confirm=True)
    plan = approved(world, AccountFactory(tenant=world.tenant, owner=world.seller), BRIEF)
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=30, what="the promoted brief to run")
    assert step_status(plan, BRIEF) == StepStatus.AUTO_EXECUTED
    assert PlanLedgerEntry.objects.filter(tenant=world.tenant, reason_code="PROMOTION_CONFIRMED").count() == 1
    assert ledger.verify_ledger(plan_id=plans[0].id).ok
