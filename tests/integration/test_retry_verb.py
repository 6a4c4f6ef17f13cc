"""No silent stalls, with a real worker and beat: a CRM step that fails past the retry limit pauses the
plan [RETRY_LIMIT]; resume alone is refused (409 STEP_FAILED); a person's retry starts a new series of
attempts, the CRM now answers, and the plan completes."""
import pytest

from orchestrator.execution.models import ActionIntent, IntentStatus
from plans import ledger, services
from plans.models import EventType, PauseKind, PlanStatus, PlanStep, StepStatus
from plans.plan_types import RENEWAL_DEFENSE, get_action_type
from plans.services.layers import open_layers
from tests.api.helpers import client_for
from tests.conftest import build_world
from tests.integration.harness import wait_for
from tests.integration.test_plan_runs import ESCALATE, approve_when_waiting, chained_plan, entries, plan_status, use_crm

BRIEF = "PREP_RENEWAL_BRIEF"
PLANS = "/api/v1/plans/"


@pytest.mark.timeout(180)
def test_past_the_retry_limit_resume_is_refused_and_a_retry_runs_a_new_series_to_completion(cluster, crm):
    # given: the CRM answers 503 to every try of the first series, then works
    world = build_world()
    use_crm(world, crm)
    tries_per_attempt, limit = get_action_type(ESCALATE).max_attempts, RENEWAL_DEFENSE.retry_limit
    crm.state.scripted = [503] * (tries_per_attempt * limit)
    plan = chained_plan(world, BRIEF, ESCALATE)
    cluster.start_worker()
    cluster.start_beat()
    approve_when_waiting(world, plan, ESCALATE)
    # when: the escalation fails at the limit
    wait_for(lambda: plan_status(plan) == PlanStatus.PAUSED, timeout=90, what="the plan to pause")
    # then: PAUSED [RETRY_LIMIT], the step FAILED after `limit` attempts
    escalate = PlanStep.objects.get(plan=plan, action_type=ESCALATE)
    assert (escalate.status, escalate.attempts) == (StepStatus.FAILED, limit)
    assert [(layer.kind, layer.scope) for layer in open_layers(plan)] == [
        (PauseKind.RETRY_LIMIT, str(escalate.step_id))]
    api = client_for(world.seller)
    shown = api.get(f"{PLANS}{plan.id}/").json()
    assert [(item["code"], item["verb"]) for item in shown["blocked_by"]] == [("RETRY_LIMIT", "retry_step")]
    # when: the owner tries resume alone
    refused = api.post(f"{PLANS}{plan.id}/resume/", {}, format="json")
    # then: 409 STEP_FAILED, naming the ways forward; the plan stays PAUSED
    assert refused.status_code == 409, refused.content
    assert refused.json()["code"] == "STEP_FAILED"
    assert "retry it" in refused.json()["detail"]
    assert plan_status(plan) == PlanStatus.PAUSED
    # when: the owner retries the step
    retried = api.post(f"{PLANS}{plan.id}/steps/{escalate.step_id}/retry/", {"reason": "The CRM is back."},
                       format="json")
    assert retried.status_code == 200, retried.content
    # then: a new series; the CRM answers; the plan completes
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=60, what="the plan to complete")
    assert plan.completion_reason == "all_steps_done"
    escalate.refresh_from_db()
    assert (escalate.status, escalate.attempts, escalate.attempts_before_series) == (StepStatus.DONE, limit + 1, limit)
    intents = ActionIntent.objects.filter(plan=plan, step_id=escalate.step_id).order_by("attempt")
    assert [(intent.attempt, intent.status) for intent in intents] == [
        *[(n, IntentStatus.FAILED) for n in range(1, limit + 1)], (limit + 1, IntentStatus.SUCCEEDED)]
    assert len(crm.state.posts()) == tries_per_attempt * limit + 1
    # the ledger: STEP_RETRIED by the owner, the new attempt numbered after the old ones
    [entry] = entries(plan, EventType.STEP_RETRIED)
    assert (entry.actor, entry.step_id, entry.data["first_attempt"]) == (f"user:{world.seller.pk}", escalate.step_id,
                                                                         limit + 1)
    started = [started.data["attempt"] for started in entries(plan, EventType.STEP_ATTEMPT_STARTED)
               if started.step_id == escalate.step_id]
    assert started == list(range(1, limit + 2))
    after_retry = [e.event_type for e in entries(plan) if e.chain_seq > entry.chain_seq]
    assert after_retry[:2] == [EventType.PAUSE_LAYER_LIFTED, EventType.PLAN_RESUMED]
    assert EventType.STEP_ATTEMPT_STARTED in after_retry
    assert after_retry[-1] == EventType.PLAN_COMPLETED
    assert ledger.verify_ledger(plan_id=plan.id).ok
    assert services.open_layers(plan) == []
