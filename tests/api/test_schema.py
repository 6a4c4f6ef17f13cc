"""OpenAPI 3 at /api/schema/: every endpoint, request body and error documented; Schemathesis
then drives every operation with generated requests: no 5xx, every response matches the schema."""
import itertools
import json
import os
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.execution.service import ExecutionService, intent_create
from plans import services
from plans.models import PlanStatus, StepStatus
from plans.proposals import renewal_defense_draft
from revplan.wsgi import application
from tests.factories import SignalFactory, make_plan

SCHEMA_URL = "/api/schema/"
WRITE_METHODS = {"post", "patch", "put", "delete"}
# Examples per operation: 20 operations x 10 stays well under a minute on this machine; before calling
# an API change done, run it with more (REVPLAN_SCHEMATHESIS_EXAMPLES=200).
EXAMPLES_PER_OPERATION = int(os.environ.get("REVPLAN_SCHEMATHESIS_EXAMPLES", "10"))

PLAN_ENDPOINTS = {
    "/api/v1/plans/": {"get", "post"},
    "/api/v1/plans/propose/": {"post"},
    "/api/v1/plans/{plan_id}/": {"get", "patch"},
    "/api/v1/plans/{plan_id}/approve/": {"post"},
    "/api/v1/plans/{plan_id}/reapprove/": {"post"},
    "/api/v1/plans/{plan_id}/pause/": {"post"},
    "/api/v1/plans/{plan_id}/resume/": {"post"},
    "/api/v1/plans/{plan_id}/abort/": {"post"},
    "/api/v1/plans/{plan_id}/revise/": {"post"},
    "/api/v1/plans/{plan_id}/steps/{step_id}/approve/": {"post"},
    "/api/v1/plans/{plan_id}/steps/{step_id}/skip/": {"post"},
    "/api/v1/plans/{plan_id}/steps/{step_id}/retry/": {"post"},
    "/api/v1/plans/{plan_id}/ledger/": {"get"},
    "/api/v1/plans/{plan_id}/why/": {"get"},
    "/api/v1/accounts/": {"get"},
    "/api/v1/accounts/{account_id}/": {"get"},
    "/api/v1/accounts/{account_id}/transfer/": {"post"},
    "/api/v1/actions/{intent_id}/cancel/": {"post"},
    "/api/v1/actions/{intent_id}/compensate/": {"post"},
}


@pytest.fixture
def openapi(db) -> dict:
    response = APIClient().get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_schema_is_openapi_3_with_every_plans_and_accounts_endpoint(openapi):
    assert openapi["openapi"].startswith("3.")
    for path, methods in PLAN_ENDPOINTS.items():
        assert path in openapi["paths"], path
        assert methods <= set(openapi["paths"][path]), path


def test_every_operation_documents_its_errors_in_the_error_shape(openapi):
    error = openapi["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "detail", "reasons"}
    for path, methods in PLAN_ENDPOINTS.items():
        for method in methods:
            operation = openapi["paths"][path][method]
            responses = operation["responses"]
            expected = {"401"}
            if "{" in path:
                expected |= {"404"}
            if method in WRITE_METHODS:
                expected |= {"400", "403", "404", "409", "413"}
                assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"], (path, method)
            assert expected <= set(responses), (path, method, expected - set(responses))
            for status_code in set(responses) - {"200", "201"}:
                schema = responses[status_code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status_code)


def test_gate_refusals_are_documented_as_422_where_the_gate_can_refuse(openapi):
    for path, method in [("/api/v1/plans/", "post"), ("/api/v1/plans/propose/", "post"),
                         ("/api/v1/plans/{plan_id}/", "patch"), ("/api/v1/plans/{plan_id}/approve/", "post"),
                         ("/api/v1/plans/{plan_id}/reapprove/", "post"),
                         ("/api/v1/plans/{plan_id}/resume/", "post")]:
        assert "422" in openapi["paths"][path][method]["responses"], (path, method)


def test_plan_responses_are_revenue_plan_v1(openapi):
    plan = openapi["components"]["schemas"]["RevenuePlanV1"]
    assert {"plan_id", "plan_status", "steps", "version", "stop_reason"} <= set(plan["properties"])
    detail = openapi["paths"]["/api/v1/plans/{plan_id}/"]["get"]["responses"]["200"]
    assert detail["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RevenuePlanV1"}


# --- Schemathesis ----------------------------------------------------------------------------


@pytest.fixture
def conformance_world(world):
    """Plans in every state a verb can act on, and a valid token for a tenant admin."""
    SignalFactory(account=world.account, signal_type="SUPPORT_RISK")
    proposed = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                     draft=renewal_defense_draft(signal_types={"SUPPORT_RISK"}), actor=world.seller)
    plans = [proposed] + [
        make_plan(account=world.account, status=status, action_types=(
            "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"),
            step_status=StepStatus.PENDING_APPROVAL if status == PlanStatus.ACTIVE else StepStatus.PENDING)
        for status in (PlanStatus.APPROVED, PlanStatus.ACTIVE, PlanStatus.PAUSED, PlanStatus.COMPLETED)
    ]
    # Actions to cancel and to undo: one not started, one that succeeded (the internal connector's).
    expires_at = timezone.now() + timedelta(hours=1)
    waiting, done = (intent_create(tenant_id=world.tenant.id, account_id=world.account.id,
                                   action_type="PREP_RENEWAL_BRIEF", expires_at=expires_at, approved_by=world.approver)
                     for _ in range(2))
    ExecutionService().execute(done.id)
    return {
        "token": Token.objects.create(user=world.admin).key,
        "account_id": str(world.account.id),
        "intents": itertools.cycle([str(waiting.id), str(done.id)]),
        # Path ids rotate through real objects, so generated bodies reach the services, not just a 404.
        "plans": itertools.cycle([(str(plan.id), [str(s) for s in plan.steps.values_list("step_id", flat=True)])
                                  for plan in plans]),
    }


@pytest.fixture
def wsgi_keeps_the_test_connection():
    """Django's WSGI handler closes the connection after each request; the test client does not.

    Requests here run inside the test's transaction, so do what django.test.client does.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _load_schema():
    """The same document /api/schema/ serves, generated at collection (no request, no database).

    Module-level rather than `schemathesis.pytest.from_fixture`: that lazy loader renames pytest
    nodes through an attribute pytest 9 no longer has.
    """
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    # The coverage phase also tries methods an endpoint does not have; OPTIONS and DELETE are the ones a
    # browser or a careless client sends (TRACE, PUT and friends only multiply cases of the same 405).
    config = schemathesis.Config.from_dict({"phases": {"coverage": {"unexpected-methods": ["options", "delete"]}}})
    loaded = schemathesis.openapi.from_dict(document, config=config)
    loaded.app = application  # requests go through Django's WSGI app in this process, inside the test's transaction
    return loaded


schema = _load_schema()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same requests on every run: a failure here is reproducible
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_the_schema(case, conformance_world, wsgi_keeps_the_test_connection):
    if "plan_id" in (case.path_parameters or {}):
        plan_id, step_ids = next(conformance_world["plans"])
        case.path_parameters["plan_id"] = plan_id
        if "step_id" in case.path_parameters:
            case.path_parameters["step_id"] = step_ids[len(case.path_parameters["step_id"]) % len(step_ids)]
    if "account_id" in (case.path_parameters or {}):
        case.path_parameters["account_id"] = conformance_world["account_id"]
    if "intent_id" in (case.path_parameters or {}):
        case.path_parameters["intent_id"] = next(conformance_world["intents"])
    case.call_and_validate(
        headers={"Authorization": f"Token {conformance_world['token']}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
