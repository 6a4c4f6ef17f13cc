"""GET /api/v1/plans/{id}/graph/: the SVG of the plan's steps, tenant-scoped, errors in the §7 JSON shape."""
import uuid

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from plans.models import PlanStep, RevenuePlan
from tests.api.helpers import assert_error, client_for
from tests.factories import make_plan
from tests.plans.test_graph import parse


def graph_url(plan_id) -> str:
    return f"/api/v1/plans/{plan_id}/graph/"


def test_the_graph_of_a_plan_the_caller_sees(world):
    plan = make_plan(account=world.account, action_types=("REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF"))
    first, second = plan.steps.order_by("sequence")
    PlanStep.objects.filter(pk=second.pk).update(depends_on=[str(first.step_id)])
    response = client_for(world.viewer).get(graph_url(plan.id), HTTP_ACCEPT="image/svg+xml")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    nodes, edges = parse(response.content.decode())
    assert set(nodes) == {str(first.step_id), str(second.step_id)}
    assert edges == [(str(first.step_id), str(second.step_id))]
    # Any Accept a browser sends (or none) gets the picture too.
    assert client_for(world.viewer).get(graph_url(plan.id)).status_code == 200


def test_another_tenants_plan_or_an_unknown_one_is_404_json(world, other_world):
    theirs = make_plan(account=other_world.account)
    for plan_id in (theirs.id, uuid.uuid4()):
        response = client_for(world.admin).get(graph_url(plan_id), HTTP_ACCEPT="image/svg+xml")
        assert response["Content-Type"] == "application/json"
        assert_error(response, 404, "NOT_FOUND")
    assert client_for(world.admin).get("/api/v1/plans/false/graph/").status_code == 404


def test_unauthenticated_and_unacceptable_requests_get_json_errors(world):
    plan = make_plan(account=world.account)
    response = APIClient().get(graph_url(plan.id), HTTP_ACCEPT="image/svg+xml")
    assert response["Content-Type"] == "application/json"
    assert_error(response, 401, "NOT_AUTHENTICATED")
    for accept in ("text/csv", "application/json"):  # the graph is SVG only; the refusal is JSON
        response = client_for(world.viewer).get(graph_url(plan.id), HTTP_ACCEPT=accept)
        assert response["Content-Type"] == "application/json"
        assert_error(response, 406, "NOT_ACCEPTABLE")
    response = client_for(world.viewer).options(graph_url(plan.id))
    assert response.status_code == 200
    assert response.json()["name"]


def test_queries_do_not_grow_with_steps(world):
    small = make_plan(account=world.account, action_types=("PREP_RENEWAL_BRIEF",))
    large = make_plan(account=world.account, action_types=("PREP_RENEWAL_BRIEF",) * 12)
    client = client_for(world.viewer)
    counts = []
    for plan in (small, large):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(graph_url(plan.id)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_every_demo_plan_renders(db):
    call_command("seed_demo", verbosity=0)
    client = client_for(get_user_model().objects.get(username="acme-admin"))
    plans = list(RevenuePlan.objects.filter(tenant__slug="acme-corp").prefetch_related("steps"))
    assert plans
    for plan in plans:
        response = client.get(graph_url(plan.id))
        assert response.status_code == 200, plan.id
        nodes, edges = parse(response.content.decode())
        steps = list(plan.steps.all())
        assert set(nodes) == {str(step.step_id) for step in steps}
        assert {status for _, status, _ in nodes.values()} <= {step.status for step in steps} | {"READY"}
        assert sorted(edges) == sorted((str(other), str(step.step_id)) for step in steps for other in step.depends_on)
