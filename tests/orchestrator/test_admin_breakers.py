"""Circuit breakers in the console: members see them; a tenant admin forces one (a reason required), through
the service, ledgered; others are refused and nothing changes."""
import pytest
from django.test import Client
from django.urls import reverse

from orchestrator.breakers.models import CircuitBreaker
from plans.models import EventType, PlanLedgerEntry

pytestmark = pytest.mark.django_db

CHANGELIST, ADD = "admin:orchestrator_circuitbreaker_changelist", "admin:orchestrator_circuitbreaker_add"


def console(user) -> Client:
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def forced_entries(world) -> list[str]:
    return list(PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.BREAKER_FORCED)
                .order_by("chain_seq").values_list("data__to_state", flat=True))


def test_a_tenant_admin_forces_a_breaker_open_on_the_add_page_then_closed_from_the_list(world):
    client = console(world.admin)
    response = client.post(reverse(ADD), {"tenant": world.tenant.pk, "connector": "crm", "state": "OPEN",
                                          "reason": "CRM maintenance"})
    assert response.status_code == 302, response.content.decode()[:2000]
    breaker = CircuitBreaker.objects.get(tenant=world.tenant, connector="crm")
    assert (breaker.state, breaker.forced) == ("OPEN", True)
    listed = client.get(reverse(CHANGELIST))
    assert listed.status_code == 200
    assert "CRM maintenance" in listed.content.decode()
    # an action without a reason does nothing
    client.post(reverse(CHANGELIST), {"action": "force_closed", "_selected_action": [breaker.pk], "reason": ""})
    breaker.refresh_from_db()
    assert breaker.state == "OPEN"
    response = client.post(reverse(CHANGELIST), {"action": "force_closed", "_selected_action": [breaker.pk],
                                                 "reason": "Maintenance is over"}, follow=True)
    assert response.status_code == 200
    breaker.refresh_from_db()
    assert (breaker.state, breaker.forced) == ("CLOSED", False)
    assert forced_entries(world) == ["OPEN", "CLOSED"]


def test_an_approver_sees_the_breakers_but_may_not_force_one(world):
    CircuitBreaker.objects.create(tenant=world.tenant, connector="crm", state="OPEN", changed_at="2026-01-01T00:00Z",
                                  changed_by="system:breaker", explanation="5 of the last 10 crm tries failed")
    client = console(world.approver)
    assert "5 of the last 10 crm tries failed" in client.get(reverse(CHANGELIST)).content.decode()
    assert client.get(reverse(ADD)).status_code == 403
    breaker = CircuitBreaker.objects.get()
    client.post(reverse(CHANGELIST), {"action": "force_closed", "_selected_action": [breaker.pk], "reason": "x"})
    breaker.refresh_from_db()
    assert breaker.state == "OPEN"
    assert forced_entries(world) == []


def test_another_tenants_breakers_are_not_listed(world, other_world):
    CircuitBreaker.objects.create(tenant=other_world.tenant, connector="crm", state="OPEN",
                                  changed_at="2026-01-01T00:00Z", changed_by="system:breaker",
                                  explanation="theirs-only")
    assert "theirs-only" not in console(world.admin).get(reverse(CHANGELIST)).content.decode()
