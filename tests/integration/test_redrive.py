"""Incident redrive with a real worker and beat: a CRM outage pauses 20 plans at the retry limit; the CRM
recovers; one bulk retry of the incident (POST /api/v1/incidents/retry/) and every plan completes, with one
effect each in the CRM."""
import uuid

import pytest

from orchestrator.execution.models import ActionIntent, IntentStatus
from plans import ledger, services
from plans.models import EventType, PauseKind, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.plan_types import RENEWAL_DEFENSE, get_action_type
from plans.schemas import PlanDraftInput, StepInput
from tests.api.helpers import client_for
from tests.conftest import build_world
from tests.factories import AccountFactory
from tests.integration.harness import wait_for
from tests.integration.test_plan_runs import ESCALATE, use_crm

PLANS = 20


@pytest.fixture
def cluster_env():
    # The breakers (issue 17) would hold most of these plans with a BREAKER layer once the outage is plain, which
    # the breaker's own test covers; here every plan is to reach its retry limit, the incident this redrives.
    return {"REVPLAN_BREAKERS_ENABLED": "0"}


def statuses(plan_ids) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in RevenuePlan.objects.filter(pk__in=plan_ids).values_list("plan_status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.mark.timeout(300)
def test_twenty_plans_paused_by_a_crm_outage_are_retried_in_one_bulk_action_and_complete_one_effect_each(
        cluster, crm):
    # given: 20 approved escalations, each on an account of its own, and a CRM that answers 503 to everything
    world = build_world()
    use_crm(world, crm)
    crm.state.scripted = [503] * 100_000
    plan_ids = []
    for _ in range(PLANS):
        account = AccountFactory(tenant=world.tenant, owner=world.seller)
        draft = services.plan_propose(account_id=account.id, plan_type="RENEWAL_DEFENSE", actor=world.seller,
                                      draft=PlanDraftInput(steps=[StepInput(step_id=uuid.uuid4(),
                                                                            action_type=ESCALATE)]))
        plan_ids.append(services.plan_approve(plan_id=draft.id, user=world.admin).id)
    cluster.start_worker(concurrency=3)
    cluster.start_beat()
    # the escalation is HIGH risk: a person approves each step once it waits
    wait_for(lambda: PlanStep.objects.filter(plan_id__in=plan_ids, status=StepStatus.PENDING_APPROVAL).count()
             == PLANS, timeout=60, what="every escalation to wait for approval")
    for step in PlanStep.objects.filter(plan_id__in=plan_ids):
        services.step_approve(plan_id=step.plan_id, step_id=step.step_id, user=world.approver)
    # when: every plan fails at its retry limit
    wait_for(lambda: statuses(plan_ids) == {PlanStatus.PAUSED: PLANS}, timeout=150,
             what="every plan to pause at the retry limit")
    tries_per_attempt, limit = get_action_type(ESCALATE).max_attempts, RENEWAL_DEFENSE.retry_limit
    assert len(crm.state.posts()) == PLANS * tries_per_attempt * limit
    api = client_for(world.admin)
    [incident] = api.get("/api/v1/incidents/").json()["results"]
    assert (incident["connector"], incident["action_type"], incident["failure_class"], incident["count"],
            incident["pause_kinds"]) == ("crm", ESCALATE, "TRANSIENT", PLANS, [PauseKind.RETRY_LIMIT])
    # when: the CRM recovers and the tenant admin retries the incident in one call
    crm.state.scripted = []
    response = api.post("/api/v1/incidents/retry/", {"connector": "crm", "action_type": ESCALATE,
                                                     "failure_class": "TRANSIENT", "reason": "The CRM is back."},
                        format="json")
    # then: a result per plan, all retried; every plan completes
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["count"], body["retried"], body["refused"], body["remaining"]) == (PLANS, PLANS, 0, 0)
    assert sorted(result["plan_id"] for result in body["results"]) == sorted(str(plan_id) for plan_id in plan_ids)
    wait_for(lambda: statuses(plan_ids) == {PlanStatus.COMPLETED: PLANS}, timeout=90,
             what="every plan to complete")
    # one effect each: 20 tasks in the CRM, one succeeded attempt per plan, numbered after the failed series
    assert len(crm.state.tasks) == PLANS
    succeeded = ActionIntent.objects.filter(plan_id__in=plan_ids, status=IntentStatus.SUCCEEDED)
    assert sorted(str(intent.plan_id) for intent in succeeded) == sorted(str(plan_id) for plan_id in plan_ids)
    assert {intent.attempt for intent in succeeded} == {limit + 1}
    assert len(crm.state.posts()) == PLANS * (tries_per_attempt * limit + 1)
    # each plan's ledger: STEP_RETRIED then INCIDENT_REDRIVEN of the one batch, then it ran to completion
    for plan_id in plan_ids:
        [redriven] = PlanLedgerEntry.objects.filter(plan_id=plan_id, event_type=EventType.INCIDENT_REDRIVEN)
        assert (redriven.actor, redriven.data["batch_id"]) == (f"user:{world.admin.pk}", body["batch_id"])
        assert PlanLedgerEntry.objects.filter(plan_id=plan_id, event_type=EventType.STEP_RETRIED).count() == 1
        assert ledger.verify_ledger(plan_id=plan_id).ok
    assert api.get("/api/v1/incidents/").json()["results"] == []
