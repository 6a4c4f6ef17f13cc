"""Tenant isolation, route by route: every path in the API's URL conf, asked about another tenant's
objects, answers 404 and changes nothing; every list shows only the caller's tenant.

Generic over the URL conf on purpose: a route added without scoping fails here without anyone
having to remember to add it (a URL parameter this test cannot fill fails it too).
"""
import re
from datetime import date, timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from orchestrator.autonomy.models import AutonomyDigest, AutonomyProposal
from orchestrator.execution.models import ActionIntent
from orchestrator.execution.service import ExecutionService, intent_create
from plans import services
from plans.models import AccountSignal, IntegrationToken, PlanLedgerEntry, PlanStatus, RevenuePlan
from tests.api.helpers import client_for
from tests.factories import make_plan

MARKER = "tenant-b-only-marker"
# Bodies tried on a write: the route must answer 404 to at least one of them (a 400 for a body it
# does not take proves nothing about scoping), and never succeed or say 403/409/422 (which would
# tell the caller the object exists).
WRITE_BODIES = ({}, {"reason": "scoping test"}, {"objective": "scoping test"}, {"engaged": True, "reason": "x"},
                {"mode": "AUTO_EXECUTE"})
REFUSALS_THAT_LEAK = {403, 409, 422}


def api_patterns(resolver=None, prefix="") -> list[tuple[str, URLPattern]]:
    """(route, pattern) for every path under /api/, at any depth of include()."""
    resolver = resolver or get_resolver()
    found = []
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found.extend(api_patterns(entry, route))
        elif route.startswith("api/"):
            found.append((route, entry))
    return found


def methods_of(pattern: URLPattern) -> list[str]:
    view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
    return [method for method in ("get", "post", "patch", "put", "delete") if hasattr(view_class, method)]


@pytest.fixture
def tenant_b(other_world):
    """Tenant B with one of everything a route can name: plan (steps, ledger), account, intent, digest."""
    other_world.account.name = MARKER
    other_world.account.save(update_fields=["name"])
    plan = make_plan(account=other_world.account, status=PlanStatus.ACTIVE, objective=MARKER)
    intent = intent_create(tenant_id=other_world.tenant.id, account_id=other_world.account.id,
                           action_type="PREP_RENEWAL_BRIEF", expires_at=timezone.now() + timedelta(hours=1),
                           approved_by=other_world.approver)
    ExecutionService().execute(intent.id)
    AccountSignal.objects.create(account=other_world.account, signal_type="SUPPORT_RISK", observed_at=timezone.now())
    AutonomyDigest.objects.create(tenant=other_world.tenant, day=date.today(), summary={"marker": MARKER},
                                  text=MARKER)
    token, _ = services.integration_token_create(tenant_id=other_world.tenant.id, name=MARKER,
                                                 user=other_world.admin)
    proposal = AutonomyProposal.objects.create(tenant=other_world.tenant, action_type="PREP_RENEWAL_BRIEF",
                                               from_mode="SHADOW", to_mode="AUTO_EXECUTE", evidence={"m": MARKER},
                                               proposed_at=timezone.now())
    return {
        "world": other_world,
        "plan_id": plan.id,
        "step_id": plan.steps.first().step_id,
        "account_id": other_world.account.id,
        "intent_id": intent.id,
        "action_type": "PREP_RENEWAL_BRIEF",
        "connector": "crm",
        "token_id": token.pk,
        "proposal_id": proposal.id,
    }


def b_state(tenant_b) -> tuple:
    tenant_id = tenant_b["world"].tenant.id
    return (
        list(RevenuePlan.objects.filter(tenant_id=tenant_id).values_list("id", "version", "plan_status")),
        PlanLedgerEntry.objects.filter(tenant_id=tenant_id).count(),
        list(ActionIntent.objects.filter(tenant_id=tenant_id).values_list("id", "status")),
        list(IntegrationToken.objects.filter(tenant_id=tenant_id).values_list("id", "revoked_at")),
        list(AutonomyProposal.objects.filter(tenant_id=tenant_id).values_list("id", "status")),
    )


def url_for(route: str, pattern: URLPattern, tenant_b) -> str:
    kwargs = {}
    for name in pattern.pattern.converters:
        assert name in tenant_b, f"{route}: add tenant B's value for <{name}> to this test's fixture"
        kwargs[name] = tenant_b[name]
    path = route
    for name, value in kwargs.items():
        path = re.sub(rf"<(\w+:)?{name}>", str(value), path)
    assert "<" not in path, f"{route}: unfilled parameter"
    return "/" + path


def test_the_walk_sees_every_api_route():
    routes = [route for route, _ in api_patterns()]
    # Spot checks that the walk goes into include(): if these vanish, the walk broke, not the API.
    assert "api/v1/plans/<uuid:plan_id>/" in routes
    assert "api/v1/actions/<uuid:intent_id>/status/" in routes
    assert len(routes) >= 25


@pytest.mark.parametrize(("route", "pattern"), api_patterns(), ids=[route for route, _ in api_patterns()])
def test_every_route_hides_another_tenants_objects(route, pattern, world, tenant_b):
    api = client_for(world.admin)  # the most powerful role there is, in tenant A
    before = b_state(tenant_b)
    path = url_for(route, pattern, tenant_b)
    # An action type or a connector is a name every tenant has, not an object of tenant B's: those routes
    # act on the caller's own tenant (or the one ?tenant= names, which must be one of theirs).
    names_an_object = bool(pattern.pattern.converters) and not {"action_type", "connector"} & set(
        pattern.pattern.converters)
    for method in methods_of(pattern):
        if method == "get":
            responses = [api.get(path), api.get(path, {"tenant": str(tenant_b["world"].tenant.id)})]
        else:
            responses = [getattr(api, method)(path, body, format="json") for body in WRITE_BODIES]
        statuses = [response.status_code for response in responses]
        assert not REFUSALS_THAT_LEAK & set(statuses), f"{method.upper()} {path}: {statuses}"
        if names_an_object:
            assert 404 in statuses, f"{method.upper()} {path}: {statuses}"
            assert not any(200 <= code < 300 for code in statuses), f"{method.upper()} {path}: {statuses}"
        for response in responses:
            body = b"".join(response.streaming_content) if response.streaming else response.content
            for secret in (MARKER, str(tenant_b["world"].tenant.id), str(tenant_b["plan_id"]),
                           str(tenant_b["intent_id"])):
                assert secret.encode() not in body, f"{method.upper()} {path} shows tenant B's {secret}"
    assert b_state(tenant_b) == before
