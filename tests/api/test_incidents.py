"""Incidents API: the plans a failing connector paused, grouped with a count per group; a tenant admin's bulk
retry of a group (a result per plan, each ledgered, through the step retry verb); bad input a §7 400;
another tenant's incidents neither visible nor touched."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator.execution.models import ActionIntent, FailureClass, IntentStatus
from orchestrator.execution.service import intent_create
from orchestrator.incidents import IncidentKey, incident_groups
from plans import ledger
from plans.models import EventType, PauseKind, PauseLayer, PlanLedgerEntry, PlanStatus, PlanStep, StepStatus
from tests.api.helpers import assert_error, client_for
from tests.factories import AccountFactory, make_plan

INCIDENTS, RETRY = "/api/v1/incidents/", "/api/v1/incidents/retry/"
BRIEF, ESCALATE = "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"
CRM_OUTAGE = {"connector": "crm", "action_type": ESCALATE, "failure_class": "TRANSIENT"}


def paused_at_the_retry_limit(world, *, failure_class=FailureClass.TRANSIENT, connector="crm", attempts=3):
    """A PAUSED plan (on an account of its own) whose escalation FAILED at the limit, as the engine leaves it:
    the step FAILED with its last error, one failed attempt each, a RETRY_LIMIT layer scoped to the step."""
    account = AccountFactory(tenant=world.tenant, owner=world.seller)
    plan = make_plan(account=account, status=PlanStatus.PAUSED, action_types=(ESCALATE,), approved_by=world.admin)
    step = plan.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.FAILED, attempts=attempts,
                                               last_error=f"{failure_class}: 503 from the CRM")
    for attempt in range(1, attempts + 1):
        intent = intent_create(tenant_id=plan.tenant_id, account_id=account.id, action_type=ESCALATE,
                               expires_at=plan.expires_at, approving_policy="test", plan_id=plan.id,
                               step_id=step.step_id, attempt=attempt)
        ActionIntent.objects.filter(pk=intent.pk).update(status=IntentStatus.FAILED, failure_class=failure_class,
                                                         connector=connector, failure_reason="503",
                                                         finished_at=timezone.now())
    PauseLayer.objects.create(plan=plan, kind=PauseKind.RETRY_LIMIT, scope=str(step.step_id),
                              reason_code="RETRY_LIMIT_EXCEEDED", explanation="failed 3 times",
                              set_by="system:orchestrator", set_at=timezone.now())
    return plan


def held_by_breaker(world):
    account = AccountFactory(tenant=world.tenant, owner=world.seller)
    plan = make_plan(account=account, status=PlanStatus.PAUSED, action_types=(ESCALATE,), approved_by=world.admin)
    PauseLayer.objects.create(plan=plan, kind=PauseKind.BREAKER, scope="crm", reason_code="BREAKER_OPEN",
                              explanation="The crm breaker is open.", evidence={"connector": "crm"},
                              set_by="system:breakers", set_at=timezone.now())
    return plan


def entries(plan, event_type) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(plan=plan, event_type=event_type).order_by("chain_seq"))


def test_the_incidents_are_grouped_with_a_count_per_group_and_another_tenants_are_not_shown(world, other_world):
    # given: three plans paused by a CRM outage, one by a permanent refusal, one held by the CRM's breaker; and
    # another tenant's outage
    outage = [paused_at_the_retry_limit(world) for _ in range(3)]
    paused_at_the_retry_limit(world, failure_class=FailureClass.PERMANENT)
    breaker = held_by_breaker(world)
    paused_at_the_retry_limit(other_world)
    # when
    response = client_for(world.admin).get(INCIDENTS)
    # then
    assert response.status_code == 200, response.content
    body = response.json()
    groups = [(g["tenant"], g["connector"], g["action_type"], g["failure_class"], g["count"], g["pause_kinds"])
              for g in body["results"]]
    assert groups == [
        (world.tenant.slug, "crm", ESCALATE, "TRANSIENT", 3, ["RETRY_LIMIT"]),
        (world.tenant.slug, "crm", ESCALATE, "BREAKER_OPEN", 1, ["BREAKER"]),
        (world.tenant.slug, "crm", ESCALATE, "PERMANENT", 1, ["RETRY_LIMIT"]),
    ]
    assert body["count"] == 3
    assert [plan["plan_id"] for plan in body["results"][0]["plans"]] == [str(plan.id) for plan in outage]
    assert body["results"][1]["plans"][0]["plan_id"] == str(breaker.id)
    assert body["results"][0]["plans"][0]["last_error"] == "TRANSIENT: 503 from the CRM"


def test_grouping_takes_the_same_queries_for_2_and_12_plans(world):
    for _ in range(2):
        paused_at_the_retry_limit(world)
    with CaptureQueriesContext(connection) as few:
        assert [group.count for group in incident_groups(world.admin)] == [2]
    for _ in range(10):
        paused_at_the_retry_limit(world)
    held_by_breaker(world)
    with CaptureQueriesContext(connection) as many:
        assert [group.count for group in incident_groups(world.admin)] == [12, 1]
    assert len(many) == len(few) == 3


def test_a_tenant_admin_retries_a_group_in_one_call_a_result_and_ledger_entries_per_plan(world, other_world):
    # given
    outage = [paused_at_the_retry_limit(world) for _ in range(3)]
    permanent = paused_at_the_retry_limit(world, failure_class=FailureClass.PERMANENT)
    theirs = paused_at_the_retry_limit(other_world)
    # when
    response = client_for(world.admin).post(RETRY, {**CRM_OUTAGE, "reason": "The CRM is back."}, format="json")
    # then: every plan of the group retried and running again, each with its own result
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["count"], body["retried"], body["refused"], body["remaining"]) == (3, 3, 0, 0)
    assert {(r["plan_id"], r["outcome"], r["plan_status"]) for r in body["results"]} == {
        (str(plan.id), "RETRIED", PlanStatus.ACTIVE) for plan in outage}
    for plan in outage:
        plan.refresh_from_db()
        step = plan.steps.get()
        assert (plan.plan_status, step.status, step.attempts_before_series) == (PlanStatus.ACTIVE,
                                                                                 StepStatus.PENDING, 3)
        [retried] = entries(plan, EventType.STEP_RETRIED)
        [redriven] = entries(plan, EventType.INCIDENT_REDRIVEN)
        assert retried.chain_seq < redriven.chain_seq
        assert (redriven.actor, redriven.step_id, redriven.data["incident"], redriven.data["batch_id"]) == (
            f"user:{world.admin.pk}", step.step_id, CRM_OUTAGE, body["batch_id"])
        assert redriven.data["reason"] == "The CRM is back."
        assert ledger.verify_ledger(plan_id=plan.id).ok
    # the other group and the other tenant's plan are untouched
    for plan in (permanent, theirs):
        plan.refresh_from_db()
        assert plan.plan_status == PlanStatus.PAUSED
        assert entries(plan, EventType.INCIDENT_REDRIVEN) == []
    # and the group is gone
    assert [g["failure_class"] for g in client_for(world.admin).get(INCIDENTS).json()["results"]] == ["PERMANENT"]


def test_a_plan_only_a_breaker_holds_is_not_retried_and_says_why(world):
    plan = held_by_breaker(world)
    response = client_for(world.admin).post(RETRY, {**CRM_OUTAGE, "failure_class": "BREAKER_OPEN"}, format="json")
    assert response.status_code == 200, response.content
    [result] = response.json()["results"]
    assert (result["plan_id"], result["outcome"], result["code"]) == (str(plan.id), "REFUSED", "HELD_BY_BREAKER")
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert entries(plan, EventType.INCIDENT_REDRIVEN) == []


def test_a_call_retries_at_most_the_configured_number_the_longest_paused_first(world, settings):
    settings.REVPLAN_REDRIVE_MAX_PLANS = 2
    outage = [paused_at_the_retry_limit(world) for _ in range(3)]
    body = client_for(world.admin).post(RETRY, CRM_OUTAGE, format="json").json()
    assert (body["count"], body["retried"], body["remaining"]) == (3, 2, 1)
    assert [r["plan_id"] for r in body["results"]] == [str(plan.id) for plan in outage[:2]]
    body = client_for(world.admin).post(RETRY, CRM_OUTAGE, format="json").json()
    assert (body["count"], body["retried"], body["remaining"]) == (1, 1, 0)


@pytest.mark.parametrize("role", ["approver", "seller", "viewer"])
def test_only_a_tenant_admin_may_redrive(world, role):
    plan = paused_at_the_retry_limit(world)
    response = client_for(getattr(world, role)).post(RETRY, CRM_OUTAGE, format="json")
    assert_error(response, 403, "NOT_ALLOWED")
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert entries(plan, EventType.STEP_RETRIED) == []


def test_another_tenants_incident_is_not_found_and_not_touched(world, other_world):
    theirs = paused_at_the_retry_limit(other_world)
    assert client_for(world.admin).get(INCIDENTS).json()["results"] == []
    assert_error(client_for(world.admin).post(RETRY, CRM_OUTAGE, format="json"), 404, "NOT_FOUND")
    assert_error(client_for(world.admin).post(RETRY, {**CRM_OUTAGE, "tenant": other_world.tenant.slug},
                                              format="json"), 404, "NOT_FOUND")
    theirs.refresh_from_db()
    assert theirs.plan_status == PlanStatus.PAUSED
    assert entries(theirs, EventType.STEP_RETRIED) == []


@pytest.mark.parametrize("body", [
    {},
    {"connector": "crm", "action_type": ESCALATE},
    {**CRM_OUTAGE, "plan_status": "ACTIVE"},
    {**CRM_OUTAGE, "connector": 7},
    {**CRM_OUTAGE, "failure_class": "x" * 100},
    {**CRM_OUTAGE, "action_type": "SEND_GIFT"},
    {**CRM_OUTAGE, "tenant": "not a slug!"},
    [CRM_OUTAGE],
], ids=["empty", "missing-failure-class", "unknown-field", "not-a-string", "too-long", "unknown-action-type",
        "bad-tenant", "a-list"])
def test_bad_input_is_a_400_in_the_error_shape_and_changes_nothing(world, body):
    plan = paused_at_the_retry_limit(world)
    assert_error(client_for(world.admin).post(RETRY, body, format="json"), 400, "VALIDATION_ERROR")
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED


def test_an_unauthenticated_caller_is_401(client):
    from rest_framework.test import APIClient

    assert_error(APIClient().get(INCIDENTS), 401, "NOT_AUTHENTICATED")
    assert_error(APIClient().post(RETRY, CRM_OUTAGE, format="json"), 401, "NOT_AUTHENTICATED")


def test_redrives_are_throttled_per_user(world, settings):
    import uuid

    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"revplan:test:{uuid.uuid4().hex}"}}
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {**rates, "incident_redrive": "1/minute"}}
    paused_at_the_retry_limit(world)
    api = client_for(world.admin)
    assert api.post(RETRY, CRM_OUTAGE, format="json").status_code == 200
    assert_error(api.post(RETRY, CRM_OUTAGE, format="json"), 429, "THROTTLED")


def test_the_key_is_a_value(world):
    assert IncidentKey("crm", ESCALATE, "TRANSIENT").as_dict() == CRM_OUTAGE
