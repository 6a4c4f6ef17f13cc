"""Signals in, with a real worker and beat: a plan whose meeting waits for a person completes on its objective
after a CRM posts RENEWAL_COMMITTED over the HTTP API; the same signal posted twice is stored once."""
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from orchestrator.execution.models import ActionIntent
from plans import ledger
from plans.models import AccountSignal, EventType, PlanLedgerEntry, PlanStatus, StepStatus
from tests.conftest import build_world
from tests.integration.harness import wait_for
from tests.integration.test_plan_runs import BRIEF, MEETING, chained_plan, plan_status, step_status, use_calendar


@pytest.mark.timeout(120)
def test_a_plan_waiting_for_a_person_completes_with_objective_met_after_a_posted_renewal(cluster, radicale):
    # given: an ACTIVE plan whose meeting waits for a person's approval (nothing is due for the tick)
    world = build_world()
    use_calendar(world, radicale)
    plan = chained_plan(world, MEETING, BRIEF)
    cluster.start_worker()
    cluster.start_beat()
    wait_for(lambda: step_status(plan, MEETING) == StepStatus.PENDING_APPROVAL, timeout=60,
             what="the meeting to wait for approval")
    assert plan_status(plan) == PlanStatus.ACTIVE
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=world.seller).key}")
    url = f"/api/v1/accounts/{world.account.id}/signals/"
    body = {"signal_type": "RENEWAL_COMMITTED", "source": "crm", "external_id": "opp-4711-committed",
            "payload": {"opportunity": "opp-4711"}}

    # when: the CRM tells revplan the customer committed, and (a retry) tells it again
    first = api.post(url, body, format="json")
    again = api.post(url, body, format="json")

    # then: one signal, and the plan completes on its objective; the waiting steps never run
    assert (first.status_code, again.status_code) == (201, 200), (first.content, again.content)
    assert again.json()["signal_id"] == first.json()["signal_id"]
    assert AccountSignal.objects.filter(account=world.account, signal_type="RENEWAL_COMMITTED").count() == 1
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=60, what="the plan to complete")
    assert plan.completion_reason == "objective_met"
    assert (step_status(plan, MEETING), step_status(plan, BRIEF)) == (StepStatus.SKIPPED, StepStatus.SKIPPED)
    assert not ActionIntent.objects.filter(plan=plan).exists()
    completed = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.PLAN_COMPLETED)
    assert completed.data["facts"]["objective_signal"]["signal_type"] == "RENEWAL_COMMITTED"
    (recorded,) = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.SIGNAL_RECORDED)
    assert recorded.actor == f"user:{world.seller.pk}"
    assert recorded.data["woken_plan_ids"] == [str(plan.id)]
    assert ledger.verify_ledger(tenant_id=world.tenant.id).ok
