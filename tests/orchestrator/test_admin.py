"""Autonomy admin pages: settings change through the services (admins only, ledgered); the rest is read-only."""
import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orchestrator.autonomy import digest
from orchestrator.autonomy.models import ActionTypeAutonomy, TenantAutonomy
from orchestrator.management.commands.seed_demo import CONSOLE_AUTONOMY_PERMISSIONS
from plans.models import EventType, PlanLedgerEntry
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def console(user) -> Client:
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="orchestrator",
                                                         codename__in=CONSOLE_AUTONOMY_PERMISSIONS))
    client = Client()
    client.force_login(user)
    return client


def autonomy_entries(world) -> list[str]:
    return list(PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.AUTONOMY_CHANGED)
                .order_by("chain_seq").values_list("reason_code", flat=True))


def test_a_tenant_admin_sets_a_mode_and_opts_in_and_both_are_ledgered(world):
    client = console(world.admin)
    response = client.post(reverse("admin:orchestrator_actiontypeautonomy_add"), {
        "tenant": world.tenant.pk, "action_type": "PREP_RENEWAL_BRIEF", "mode": "AUTO_EXECUTE", "max_per_day": 4})
    assert response.status_code == 302, response.content.decode()[:2000]
    row = ActionTypeAutonomy.objects.get(tenant=world.tenant)
    assert (row.mode, row.max_per_day, row.updated_by) == ("AUTO_EXECUTE", 4, f"user:{world.admin.pk}")
    response = client.post(reverse("admin:orchestrator_tenantautonomy_add"), {
        "tenant": world.tenant.pk, "opted_in": "on", "max_per_account_per_day": 3, "max_proposals_per_day": 20,
        "proposal_cooldown_days": 7})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert TenantAutonomy.objects.get(tenant=world.tenant).opted_in_by == world.admin
    assert autonomy_entries(world) == ["ACTION_TYPE_AUTONOMY_CHANGED", "OPTED_IN"]


def test_an_approver_may_look_but_a_change_is_refused_and_changes_nothing(world):
    client = console(world.approver)
    assert client.get(reverse("admin:orchestrator_actiontypeautonomy_changelist")).status_code == 200
    response = client.post(reverse("admin:orchestrator_actiontypeautonomy_add"), {
        "tenant": world.tenant.pk, "action_type": "PREP_RENEWAL_BRIEF", "mode": "AUTO_EXECUTE", "max_per_day": 4})
    assert response.status_code == 200  # the form again, with the error: no tenant is offered to a non-admin
    assert set(response.context["adminform"].form.errors) == {"tenant"}
    assert not ActionTypeAutonomy.objects.exists()
    assert autonomy_entries(world) == []


def test_another_tenants_settings_are_not_there(world, other_world):
    ActionTypeAutonomy.objects.create(tenant=other_world.tenant, action_type="PREP_RENEWAL_BRIEF")
    row = ActionTypeAutonomy.objects.get()
    client = console(world.admin)
    response = client.get(reverse("admin:orchestrator_actiontypeautonomy_change", args=[row.pk]))
    assert response.status_code == 302  # Django's admin redirects for an object outside the queryset
    assert "PREP_RENEWAL_BRIEF" not in client.get(
        reverse("admin:orchestrator_actiontypeautonomy_changelist")).content.decode()


def test_the_read_only_pages_render_in_a_fixed_number_of_queries(world):
    client = console(world.admin)
    for _ in range(3):
        AccountFactory(tenant=world.tenant, owner=world.seller)
    digest.digest_for_tenant(world.tenant.id, day=timezone.now().date())
    for name in ("proposaldecision", "autonomydigest", "autonomyusage", "tenantautonomy", "actiontypeautonomy"):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse(f"admin:orchestrator_{name}_changelist"))
        assert response.status_code == 200, name
        assert len(queries) < 15, (name, len(queries))


def test_bad_values_are_form_errors_and_only_administered_tenants_are_offered(world, other_world):
    client = console(world.admin)
    response = client.post(reverse("admin:orchestrator_actiontypeautonomy_add"), {
        "tenant": world.tenant.pk, "action_type": "SEND_FLOWERS", "mode": "AUTO_EXECUTE", "max_per_day": 10**9})
    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"action_type", "max_per_day"}
    assert not ActionTypeAutonomy.objects.exists()
    page = client.get(reverse("admin:orchestrator_tenantautonomy_add")).content.decode()
    assert world.tenant.slug in page
    assert other_world.tenant.slug not in page
