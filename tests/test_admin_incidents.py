"""The admin's incidents page: the groups with their counts (one's own tenant only), and a tenant admin's
"Retry all", confirmed first, through the API's redrive service (a result per plan)."""
from django.test import Client

from plans.models import EventType, PlanLedgerEntry, PlanStatus
from tests.api.test_incidents import CRM_OUTAGE, paused_at_the_retry_limit

PAGE = "/admin/incidents/"


def console(user) -> Client:
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


def test_the_page_lists_the_groups_of_ones_own_tenant_and_a_tenant_admin_retries_one(world, other_world):
    outage = [paused_at_the_retry_limit(world) for _ in range(2)]
    theirs = paused_at_the_retry_limit(other_world)
    page = console(world.admin).get(PAGE)
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count('class="incident"') == 1
    assert 'class="incident-count">2<' in text
    assert "Retry all 2" in text
    assert str(theirs.id) not in text
    # the button asks first
    confirm = console(world.admin).get(PAGE, {"tenant": world.tenant.slug, **CRM_OUTAGE, "confirm": "1"})
    assert 'id="incident-confirm"' in confirm.content.decode()
    # confirmed: each plan retried, a result per plan
    done = console(world.admin).post(PAGE, {"tenant": world.tenant.slug, **CRM_OUTAGE, "reason": "CRM back"})
    assert done.status_code == 200
    assert done.content.decode().count('data-outcome="RETRIED"') == 2
    for plan in outage:
        plan.refresh_from_db()
        assert plan.plan_status == PlanStatus.ACTIVE
        assert PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.INCIDENT_REDRIVEN).count() == 1
    theirs.refresh_from_db()
    assert theirs.plan_status == PlanStatus.PAUSED


def test_an_approver_sees_the_groups_but_no_retry_and_a_forged_post_changes_nothing(world):
    plan = paused_at_the_retry_limit(world)
    client = console(world.approver)
    text = client.get(PAGE).content.decode()
    assert 'class="incident-count">1<' in text
    assert "incident-retry" not in text
    refused = client.post(PAGE, {"tenant": world.tenant.slug, **CRM_OUTAGE})
    assert refused.status_code == 200
    assert "Not retried" in refused.content.decode()
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert not PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STEP_RETRIED).exists()


def test_the_page_needs_a_staff_login(world):
    assert Client().get(PAGE).status_code == 302
