"""The circuit breakers API: any member reads every connector's breaker; only a tenant admin forces one,
each force ledgered; bad input and other tenants change nothing."""
import pytest

from orchestrator.breakers.models import CircuitBreaker
from plans.models import EventType, PlanLedgerEntry
from tests.api.helpers import assert_error, client_for

pytestmark = pytest.mark.django_db

BREAKERS = "/api/v1/breakers/"


def force_url(connector: str) -> str:
    return f"{BREAKERS}{connector}/force/"


def test_any_member_reads_every_connectors_breaker_closed_by_default(world):
    response = client_for(world.viewer).get(BREAKERS)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tenant_id"] == str(world.tenant.id)
    assert {item["connector"]: (item["state"], item["forced"], item["held_plans"]) for item in body["breakers"]} == {
        "calendar": ("CLOSED", False, 0), "crm": ("CLOSED", False, 0)}
    crm = next(item for item in body["breakers"] if item["connector"] == "crm")
    assert set(crm["thresholds"]) == {"failure_rate", "min_tries", "window_seconds", "cool_down_seconds"}
    assert crm["window"] == {"tries": 0, "failures": 0}


def test_a_tenant_admin_forces_a_breaker_open_and_closed_each_ledgered(world):
    client = client_for(world.admin)
    response = client.post(force_url("crm"), {"state": "OPEN", "reason": "CRM maintenance tonight"}, format="json")
    assert response.status_code == 200, response.content
    crm = next(item for item in response.json()["breakers"] if item["connector"] == "crm")
    assert (crm["state"], crm["forced"], crm["changed_by"]) == ("OPEN", True, f"user:{world.admin.pk}")
    assert "CRM maintenance tonight" in crm["explanation"]
    response = client.post(force_url("crm"), {"state": "CLOSED", "reason": "done"}, format="json")
    assert response.status_code == 200, response.content
    entries = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.BREAKER_FORCED)
    assert list(entries.order_by("chain_seq").values_list("data__to_state", flat=True)) == ["OPEN", "CLOSED"]


@pytest.mark.parametrize("role", ["viewer", "seller", "approver"])
def test_any_other_role_is_refused_with_403_and_nothing_changes(world, role):
    response = client_for(getattr(world, role)).post(force_url("crm"), {"state": "OPEN", "reason": "x"}, format="json")
    assert_error(response, 403, response.json()["code"])
    assert not CircuitBreaker.objects.exists()
    assert not PlanLedgerEntry.objects.filter(event_type=EventType.BREAKER_FORCED).exists()


@pytest.mark.parametrize(("connector", "body"), [
    ("crm", {"state": "HALF_OPEN", "reason": "x"}),
    ("crm", {"state": "OPEN"}),
    ("crm", {"state": "OPEN", "reason": "x", "forced": True}),
    ("crm", {"state": "OPEN", "reason": "   "}),
    ("fax", {"state": "OPEN", "reason": "x"}),
    ("internal", {"state": "OPEN", "reason": "our own database has no breaker"}),
])
def test_bad_input_is_a_400_and_changes_nothing(world, connector, body):
    response = client_for(world.admin).post(force_url(connector), body, format="json")
    assert response.status_code == 400, response.content
    assert_error(response, 400, response.json()["code"])
    assert not CircuitBreaker.objects.filter(state="OPEN").exists()
    assert not PlanLedgerEntry.objects.filter(event_type=EventType.BREAKER_FORCED).exists()


def test_another_tenants_breakers_are_a_404(world, other_world):
    client = client_for(world.admin)
    assert_error(client.get(BREAKERS, {"tenant": str(other_world.tenant.id)}), 404, "NOT_FOUND")
    response = client.post(f"{force_url('crm')}?tenant={other_world.tenant.id}", {"state": "OPEN", "reason": "x"},
                           format="json")
    assert_error(response, 404, "NOT_FOUND")
    assert not CircuitBreaker.objects.exists()


def test_unauthenticated_is_a_401(client):
    assert client.get(BREAKERS).status_code == 401


def test_the_read_shows_why_it_opened_the_window_and_the_plans_it_holds(world):
    from orchestrator.breakers import services
    from orchestrator.breakers.plans import hold_plan, refusal
    from orchestrator.execution.models import AttemptOutcome
    from plans.models import PlanStatus
    from tests.factories import AccountFactory, make_plan

    for _ in range(20):
        services.record(world.tenant.id, "crm", AttemptOutcome.TRANSIENT_ERROR, holder="p", error="HTTP 503.")
    plan = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE)
    hold_plan(plan_id=plan.id, stopped=refusal("crm", "OPEN", "ESCALATE_SUPPORT_RISK"))
    body = client_for(world.viewer).get(BREAKERS).json()
    crm = next(item for item in body["breakers"] if item["connector"] == "crm")
    assert (crm["state"], crm["reason_code"], crm["held_plans"], crm["times_opened"]) == (
        "OPEN", "FAILURE_RATE_EXCEEDED", 1, 1)
    assert crm["window"] == {"tries": 20, "failures": 20}
    assert crm["retry_at"] is not None
    assert "20 of the last 20 crm tries" in crm["explanation"]
