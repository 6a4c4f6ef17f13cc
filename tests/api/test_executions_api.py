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
