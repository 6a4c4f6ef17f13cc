"""Settings admin pages (autonomy, connector settings, routes): they change through the services (admins only,
ledgered, connector secrets masked); the rest is read-only."""
import json

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orchestrator.autonomy import digest
from orchestrator.autonomy.models import ActionTypeAutonomy, TenantAutonomy
from orchestrator.execution import routing
from orchestrator.execution.models import ActionRoute, ConnectorConfig
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


# --- connector settings and routes: through orchestrator.execution.routing --------------------------

SECRET = "sk-live-0123456789abcdef"
CRM = "https://crm.acme.example"


def settings_console(user) -> Client:
    client = console(user)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="orchestrator", content_type__model__in=["connectorconfig", "actionroute"]))
    return client


def settings_entries(world, event_type) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=event_type).order_by("chain_seq"))


def add_crm_config(client, world, **fields):
    return client.post(reverse("admin:orchestrator_connectorconfig_add"), {
        "tenant": world.tenant.pk, "connector": "crm", "base_url": CRM, "api_key": SECRET, **fields})


def test_a_tenant_admin_sets_connector_settings_and_the_secret_is_never_shown_or_ledgered(world):
    client = settings_console(world.admin)

    response = add_crm_config(client, world)

    assert response.status_code == 302, response.content.decode()[:3000]
    config = ConnectorConfig.objects.get(tenant=world.tenant)
    assert config.settings == {"base_url": CRM, "api_key": SECRET}
    [entry] = settings_entries(world, EventType.CONNECTOR_CONFIG_CHANGED)
    assert entry.actor == f"user:{world.admin.pk}"
    assert entry.data["after"] == {"api_key": "set", "base_url": CRM}
    assert SECRET not in json.dumps(entry.data) + entry.explanation
    change_page = client.get(reverse("admin:orchestrator_connectorconfig_change", args=[config.pk])).content.decode()
    changelist = client.get(reverse("admin:orchestrator_connectorconfig_changelist")).content.decode()
    ledger_page = client.get(reverse("admin:plans_planledgerentry_change", args=[entry.pk])).content.decode()
    for page in (change_page, changelist, ledger_page):
        assert SECRET not in page
    assert 'type="password"' in change_page
    assert "Set — leave blank to keep it." in change_page
    assert "api_key: set" in changelist


def test_a_blank_secret_keeps_the_stored_one_and_clear_removes_it(world):
    client = settings_console(world.admin)
    add_crm_config(client, world)
    config = ConnectorConfig.objects.get()
    url = reverse("admin:orchestrator_connectorconfig_change", args=[config.pk])

    kept = client.post(url, {"base_url": CRM, "api_key": "", "timeout_seconds": "5"})
    config.refresh_from_db()
    settings_after_keep = dict(config.settings)
    cleared = client.post(url, {"base_url": CRM, "api_key": "", "clear_api_key": "on", "timeout_seconds": "5"})
    config.refresh_from_db()

    assert (kept.status_code, cleared.status_code) == (302, 302)
    assert settings_after_keep == {"base_url": CRM, "api_key": SECRET, "timeout_seconds": 5.0}
    assert config.settings == {"base_url": CRM, "timeout_seconds": 5.0}
    assert [entry.data["changed"] for entry in settings_entries(world, EventType.CONNECTOR_CONFIG_CHANGED)] == [
        ["api_key", "base_url"], ["timeout_seconds"], ["api_key"]]


def test_an_approvers_connector_change_is_refused_and_writes_nothing(world):
    client = settings_console(world.approver)

    response = add_crm_config(client, world)

    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"tenant"}  # no tenant of theirs to administer
    assert not ConnectorConfig.objects.exists()
    assert settings_entries(world, EventType.CONNECTOR_CONFIG_CHANGED) == []


def test_an_approvers_change_to_an_existing_config_is_refused_too(world):
    add_crm_config(settings_console(world.admin), world)
    config = ConnectorConfig.objects.get()
    client = settings_console(world.approver)

    response = client.post(reverse("admin:orchestrator_connectorconfig_change", args=[config.pk]),
                           {"base_url": "https://elsewhere.example", "api_key": "", "timeout_seconds": ""})
    delete = client.post(reverse("admin:orchestrator_connectorconfig_delete", args=[config.pk]), {"post": "yes"})

    assert response.status_code == 200
    assert "Only a tenant admin may change tenant settings." in response.content.decode()
    assert delete.status_code == 403
    config.refresh_from_db()
    assert config.settings == {"base_url": CRM, "api_key": SECRET}
    assert len(settings_entries(world, EventType.CONNECTOR_CONFIG_CHANGED)) == 1


def test_an_endpoint_the_guard_refuses_is_a_form_error_on_its_input(world):
    client = settings_console(world.admin)

    response = add_crm_config(client, world, base_url="https://169.254.169.254/latest/meta-data/")

    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"base_url"}
    assert SECRET not in response.content.decode()
    assert not ConnectorConfig.objects.exists()


def test_removing_a_config_goes_through_the_service(world):
    client = settings_console(world.admin)
    add_crm_config(client, world)
    config = ConnectorConfig.objects.get()

    response = client.post(reverse("admin:orchestrator_connectorconfig_delete", args=[config.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not ConnectorConfig.objects.exists()
    assert [entry.reason_code for entry in settings_entries(world, EventType.CONNECTOR_CONFIG_CHANGED)] == [
        "CREATED", "DELETED"]


def test_routes_are_set_changed_and_removed_through_the_service(world):
    client = settings_console(world.admin)

    added = client.post(reverse("admin:orchestrator_actionroute_add"), {
        "tenant": world.tenant.pk, "action_type": "ESCALATE_SUPPORT_RISK", "connector": "internal"})
    route = ActionRoute.objects.get()
    changed = client.post(reverse("admin:orchestrator_actionroute_change", args=[route.pk]), {"connector": "crm"})
    removed = client.post(reverse("admin:orchestrator_actionroute_delete", args=[route.pk]), {"post": "yes"})

    assert (added.status_code, changed.status_code, removed.status_code) == (302, 302, 302)
    assert not ActionRoute.objects.exists()
    assert [(entry.reason_code, entry.data["after"]) for entry in settings_entries(
        world, EventType.ACTION_ROUTE_CHANGED)] == [
        ("CREATED", {"connector": "internal"}), ("UPDATED", {"connector": "crm"}), ("DELETED", None)]


def test_an_approvers_route_is_refused(world):
    response = settings_console(world.approver).post(reverse("admin:orchestrator_actionroute_add"), {
        "tenant": world.tenant.pk, "action_type": "ESCALATE_SUPPORT_RISK", "connector": "internal"})

    assert response.status_code == 200
    assert not ActionRoute.objects.exists()
    assert settings_entries(world, EventType.ACTION_ROUTE_CHANGED) == []


def test_the_settings_changelists_render_in_a_fixed_number_of_queries(world):
    client = settings_console(world.admin)
    add_crm_config(client, world)
    client.post(reverse("admin:orchestrator_actionroute_add"), {
        "tenant": world.tenant.pk, "action_type": "ESCALATE_SUPPORT_RISK", "connector": "internal"})
    counts = {}
    for name in ("connectorconfig", "actionroute"):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse(f"admin:orchestrator_{name}_changelist")).status_code == 200
        counts[name] = len(queries)
    routing.action_route_set(tenant_id=world.tenant.id, action_type="PREP_RENEWAL_BRIEF", connector="crm",
                             user=world.admin)
    routing.connector_config_set(tenant_id=world.tenant.id, connector="calendar", user=world.admin,
                                 settings={"url": "https://dav.acme.example"})
    for name in ("connectorconfig", "actionroute"):
        with CaptureQueriesContext(connection) as queries:
            client.get(reverse(f"admin:orchestrator_{name}_changelist"))
        assert len(queries) == counts[name], name
