"""Execution status API: shape, explanations, tenant isolation, filters, constant query counts."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.execution.models import ExecutionAttempt
from orchestrator.execution.service import ExecutionService, intent_create


@pytest.fixture
def api(world):
    client = APIClient()
    client.force_authenticate(world.viewer)
    return client


def make_intents(world, count, action_type="PREP_RENEWAL_BRIEF"):
    return [
        intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type=action_type,
                      expires_at=timezone.now() + timedelta(hours=1), approved_by=world.approver)
        for _ in range(count)
    ]


def test_status_of_a_succeeded_intent(api, world):
    intent = ExecutionService().execute(make_intents(world, 1)[0].id)
    response = api.get(f"/api/v1/actions/{intent.id}/status/")
    assert response.status_code == 200
    body = response.json()
    assert body["intent_id"] == str(intent.id)
    assert body["status"] == "SUCCEEDED"
    assert body["external_ids"] == intent.external_ids
    assert body["connector"] == "internal"
    assert "was done through the internal connector" in body["explanation"]
    assert body["outcome"].startswith("Succeeded on the 1st try, ")
    assert body["tries"]["count"] == 1
    assert body["tries"]["last_try"]["outcome"] == "SUCCEEDED"
    assert "try_history" not in body  # each try only when asked for
    detailed = api.get(f"/api/v1/actions/{intent.id}/status/", {"include": "tries"}).json()
    assert [a["outcome"] for a in detailed["try_history"]] == ["SUCCEEDED"]


def test_status_of_a_failed_intent_explains_without_a_stack_trace(api, world):
    intent = make_intents(world, 1, "ESCALATE_SUPPORT_RISK")[0]  # no CRM configured: a permanent failure
    ExecutionService().execute(intent.id)
    body = api.get(f"/api/v1/actions/{intent.id}/status/").json()
    assert body["status"] == "FAILED"
    assert body["failure_class"] == "PERMANENT"
    assert "REVPLAN_CRM_BASE_URL" in body["explanation"]
    assert "Traceback" not in str(body)


def test_another_tenants_intent_and_account_are_404(api, other_world):
    theirs = make_intents(other_world, 1)[0]
    for url in (f"/api/v1/actions/{theirs.id}/status/", f"/api/v1/accounts/{other_world.account.id}/executions/"):
        response = api.get(url)
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"


def test_unknown_ids_are_404_and_malformed_ids_do_not_route(api, db):
    assert api.get("/api/v1/actions/00000000-0000-0000-0000-000000000000/status/").status_code == 404
    assert api.get("/api/v1/actions/not-a-uuid/status/").status_code == 404


def test_unauthenticated_is_401(world):
    intent = make_intents(world, 1)[0]
    assert APIClient().get(f"/api/v1/actions/{intent.id}/status/").status_code == 401


def test_account_executions_filter_by_status_and_paginate(api, world):
    intents = make_intents(world, 3)
    ExecutionService().execute(intents[0].id)
    body = api.get(f"/api/v1/accounts/{world.account.id}/executions/", {"status": "PENDING"}).json()
    assert body["count"] == 2
    assert {row["intent_id"] for row in body["results"]} == {str(i.id) for i in intents[1:]}
    assert set(body) == {"count", "next", "previous", "results"}
    bad = api.get(f"/api/v1/accounts/{world.account.id}/executions/", {"status": "BOGUS"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "VALIDATION_ERROR"


def count_queries(api, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert api.get(url).status_code == 200
    return len(queries)


def test_list_query_count_does_not_grow_with_the_page(api, world):
    url = f"/api/v1/accounts/{world.account.id}/executions/"
    for intent in make_intents(world, 2):
        ExecutionService().execute(intent.id)
    small = count_queries(api, url)
    for intent in make_intents(world, 25):
        ExecutionService().execute(intent.id)
    assert ExecutionAttempt.objects.filter(intent__account=world.account).count() == 27
    assert count_queries(api, url) == small


def test_the_paths_first_published_without_a_slash_still_answer(api, world):
    # given an intent, read through the slashed path
    intent = ExecutionService().execute(make_intents(world, 1)[0].id)
    slashed = api.get(f"/api/v1/actions/{intent.id}/status/").json()
    # then the old paths give the same answers, and the schema lists only the slashed ones
    assert api.get(f"/api/v1/actions/{intent.id}/status").json() == slashed
    listed = api.get(f"/api/v1/accounts/{world.account.id}/executions").json()
    assert [item["intent_id"] for item in listed["results"]] == [str(intent.id)]
    paths = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert "/api/v1/actions/{intent_id}/status/" in paths
    assert "/api/v1/actions/{intent_id}/status" not in paths
    assert all(path.endswith("/") for path in paths)


def test_a_step_and_the_status_api_show_an_intent_in_one_shape(api, world):
    intent = ExecutionService().execute(make_intents(world, 1)[0].id)
    body = api.get(f"/api/v1/actions/{intent.id}/status/", {"include": "tries"}).json()
    assert body["tries"]["count"] == 1
    assert "attempts" not in body
    assert [item["outcome"] for item in body["try_history"]] == ["SUCCEEDED"]


# --- the outcome sentence, the tries summary, ?include=tries ----------------------------------------


@pytest.fixture
def crm_for_world(world, crm, settings):
    from orchestrator.execution.models import ConnectorConfig

    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    settings.REVPLAN_RETRY_BASE_SECONDS = 0.01
    settings.REVPLAN_RETRY_MAX_DELAY_SECONDS = 0.05
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"base_url": crm.base_url, "api_key": "k", "timeout_seconds": 2})
    return crm


def escalation(world):
    return intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type="ESCALATE_SUPPORT_RISK",
                         expires_at=timezone.now() + timedelta(hours=1), approved_by=world.admin)


def test_a_crm_failing_on_every_try_is_one_sentence_and_its_raw_answer_is_shown_nowhere(api, world, crm_for_world):
    crm_for_world.state.scripted = [(503, {}, "SECRET-BODY-123 at http://internal.example/")] * 4
    intent = ExecutionService().execute(escalation(world).id)
    summary = api.get(f"/api/v1/actions/{intent.id}/status/")
    detailed = api.get(f"/api/v1/actions/{intent.id}/status/", {"include": "tries"})
    listed = api.get(f"/api/v1/accounts/{world.account.id}/executions/", {"include": "tries"})
    body = summary.json()
    assert body["outcome"] == "Failed: the CRM answered HTTP 503 (server error) on all 4 tries."
    assert body["tries"]["count"] == 4
    assert body["tries"]["last_try"]["outcome"] == "TRANSIENT_ERROR"
    assert "try_history" not in body
    tries = detailed.json()["try_history"]
    assert [item["error"] for item in tries] == ["The CRM answered HTTP 503 (server error)."] * 4
    for response in (summary, detailed, listed):
        assert b"SECRET-BODY-123" not in response.content
        assert b"internal.example" not in response.content


def test_a_success_after_retries_says_on_which_try(api, world, crm_for_world):
    crm_for_world.state.scripted = [503, 503]
    intent = ExecutionService().execute(escalation(world).id)
    body = api.get(f"/api/v1/actions/{intent.id}/status/").json()
    assert body["outcome"].startswith("Succeeded on the 3rd try, ")
    assert body["outcome"].endswith(" after it was approved to run.")


def test_a_lost_worker_is_explained(api, world):
    from orchestrator.execution.models import ActionIntent, FailureClass, IntentStatus

    intent = make_intents(world, 1)[0]
    ActionIntent.objects.filter(pk=intent.pk).update(  # as the spine leaves it after repeated worker loss
        status=IntentStatus.FAILED, failure_class=FailureClass.WORKER_LOST, attempts=1, connector="internal",
        failure_reason="a worker started it 3 times and never finished; giving up on this attempt",
        finished_at=timezone.now())
    body = api.get(f"/api/v1/actions/{intent.id}/status/").json()
    assert body["outcome"].startswith("Failed: the worker running it stopped before it finished (lost)")
    assert "retrying the step is safe" in body["outcome"]


def test_an_unknown_include_is_400(api, world):
    intent = make_intents(world, 1)[0]
    for url in (f"/api/v1/actions/{intent.id}/status/", f"/api/v1/accounts/{world.account.id}/executions/"):
        body = api.get(url, {"include": "tries,raw"}).json()
        assert body["code"] == "VALIDATION_ERROR"
        assert "raw" in body["reasons"][0]["detail"]


def test_the_summary_and_the_tries_are_in_the_schema(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    intent = schema["components"]["schemas"]["ActionIntentDetail"]
    assert {"outcome", "tries", "try_history"} <= set(intent["properties"])
    assert "try_history" not in intent["required"]
    parameters = schema["paths"]["/api/v1/actions/{intent_id}/status/"]["get"]["parameters"]
    assert any(parameter["name"] == "include" for parameter in parameters)
