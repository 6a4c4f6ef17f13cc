"""Connector settings and action routes: a tenant admin's writes, each in the tenant's ledger chain, secrets masked."""
import json

import pytest

from orchestrator.execution import routing
from orchestrator.execution.models import ActionRoute, ConnectorConfig
from plans.errors import NotAllowed, NotFound, ValidationFailed
from plans.models import EventType, PlanLedgerEntry, Role

pytestmark = pytest.mark.django_db

SECRET = "sk-live-0123456789abcdef"
ROTATED = "sk-live-fedcba9876543210"
CRM = "https://crm.acme.example"


def tenant_entries(world, event_type):
    return list(PlanLedgerEntry.objects.filter(tenant=world.tenant, plan__isnull=True, event_type=event_type)
                .order_by("chain_seq"))


def written_anywhere(entry: PlanLedgerEntry, *secrets: str) -> list[str]:
    text = json.dumps(entry.data) + entry.explanation + entry.reason_code + entry.actor
    return [secret for secret in secrets if secret in text]


def test_an_approvers_change_is_refused_and_writes_nothing(world):
    with pytest.raises(NotAllowed):
        routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.approver,
                                     settings={"base_url": CRM}, secrets={"api_key": SECRET})

    assert not ConnectorConfig.objects.exists()
    assert tenant_entries(world, EventType.CONNECTOR_CONFIG_CHANGED) == []


@pytest.mark.parametrize("who", ["other_tenants_admin", "superuser_without_membership"])
def test_no_one_outside_the_tenant_may_change_it_superusers_included(world, other_world, who):
    user = other_world.admin
    if who == "superuser_without_membership":
        user.memberships.all().delete()
        user.is_superuser = user.is_staff = True
        user.save()

    with pytest.raises(NotFound):
        routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=user,
                                     settings={"base_url": CRM})

    assert not ConnectorConfig.objects.exists()


def test_a_tenant_admins_change_is_ledgered_with_the_secret_masked(world):
    config = routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                          settings={"base_url": CRM}, secrets={"api_key": SECRET})

    config.refresh_from_db()
    assert config.settings == {"base_url": CRM, "api_key": SECRET}
    [entry] = tenant_entries(world, EventType.CONNECTOR_CONFIG_CHANGED)
    assert (entry.actor, entry.reason_code) == (f"user:{world.admin.pk}", "CREATED")
    assert entry.data == {"subject": {"connector": "crm"}, "change": "CREATED", "before": None,
                          "after": {"api_key": "set", "base_url": CRM}, "changed": ["api_key", "base_url"]}
    assert written_anywhere(entry, SECRET) == []


def test_a_secret_left_out_is_kept_a_new_one_replaces_it_and_neither_is_ledgered(world):
    routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                 settings={"base_url": CRM}, secrets={"api_key": SECRET})

    routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                 settings={"base_url": CRM, "timeout_seconds": 5})
    kept = ConnectorConfig.objects.get().settings
    routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                 settings={"base_url": CRM, "timeout_seconds": 5}, secrets={"api_key": ROTATED})
    rotated = ConnectorConfig.objects.get().settings
    routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                 settings={"base_url": CRM, "timeout_seconds": 5}, secrets={"api_key": None})

    assert kept == {"base_url": CRM, "api_key": SECRET, "timeout_seconds": 5}
    assert rotated["api_key"] == ROTATED
    assert ConnectorConfig.objects.get().settings == {"base_url": CRM, "timeout_seconds": 5}
    entries = tenant_entries(world, EventType.CONNECTOR_CONFIG_CHANGED)
    assert [(entry.data["before"], entry.data["after"], entry.data["changed"]) for entry in entries[1:]] == [
        ({"api_key": "set", "base_url": CRM}, {"api_key": "set", "base_url": CRM, "timeout_seconds": 5},
         ["timeout_seconds"]),
        ({"api_key": "set", "base_url": CRM, "timeout_seconds": 5},
         {"api_key": "set", "base_url": CRM, "timeout_seconds": 5}, ["api_key"]),
        ({"api_key": "set", "base_url": CRM, "timeout_seconds": 5}, {"base_url": CRM, "timeout_seconds": 5},
         ["api_key"]),
    ]
    assert all(written_anywhere(entry, SECRET, ROTATED) == [] for entry in entries)


def test_a_change_that_changes_nothing_writes_nothing(world):
    routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                 settings={"base_url": CRM}, secrets={"api_key": SECRET})
    routing.action_route_set(tenant_id=world.tenant.id, action_type="ESCALATE_SUPPORT_RISK", connector="internal",
                             user=world.admin)
    before = PlanLedgerEntry.objects.filter(tenant=world.tenant).count()

    routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                 settings={"base_url": CRM}, secrets={"api_key": SECRET})
    routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                 settings={"base_url": CRM})
    routing.action_route_set(tenant_id=world.tenant.id, action_type="ESCALATE_SUPPORT_RISK", connector="internal",
                             user=world.admin)
    routing.connector_config_delete(tenant_id=world.tenant.id, connector="calendar", user=world.admin)
    routing.action_route_delete(tenant_id=world.tenant.id, action_type="PREP_RENEWAL_BRIEF", user=world.admin)

    assert PlanLedgerEntry.objects.filter(tenant=world.tenant).count() == before


@pytest.mark.parametrize(("given", "secrets", "refused"), [
    ({"base_url": "https://169.254.169.254/"}, {}, "cannot be a connector endpoint"),
    ({"base_url": "https://10.0.0.1/"}, {}, "cannot be a connector endpoint"),
    ({"base_url": CRM, "api_key": SECRET}, {}, "a secret is set on its own"),
    ({"base_url": CRM}, {"password": SECRET}, "has no secret password"),
    ({"url": CRM}, {}, "url"),
])
def test_refused_settings_write_nothing(world, given, secrets, refused):
    with pytest.raises(ValidationFailed) as raised:
        routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                     settings=given, secrets=secrets)

    assert refused in raised.value.detail
    assert SECRET not in raised.value.detail
    assert not ConnectorConfig.objects.exists()
    assert tenant_entries(world, EventType.CONNECTOR_CONFIG_CHANGED) == []


def test_removing_a_config_is_ledgered_masked(world):
    routing.connector_config_set(tenant_id=world.tenant.id, connector="crm", user=world.admin,
                                 settings={"base_url": CRM}, secrets={"api_key": SECRET})

    routing.connector_config_delete(tenant_id=world.tenant.id, connector="crm", user=world.admin)

    assert not ConnectorConfig.objects.exists()
    entry = tenant_entries(world, EventType.CONNECTOR_CONFIG_CHANGED)[-1]
    assert (entry.reason_code, entry.data["before"], entry.data["after"]) == (
        "DELETED", {"api_key": "set", "base_url": CRM}, None)
    assert written_anywhere(entry, SECRET) == []


def test_masking_shows_only_known_settings_in_clear():
    assert routing.masked_settings("calendar", {"url": CRM, "username": "ops", "password": SECRET,
                                                "token": "legacy"}) == {
        "password": "set", "token": "set", "url": CRM, "username": "ops"}


def test_routes_are_a_tenant_admins_and_every_change_is_ledgered(world):
    with pytest.raises(NotAllowed):
        routing.action_route_set(tenant_id=world.tenant.id, action_type="ESCALATE_SUPPORT_RISK",
                                 connector="internal", user=world.approver)
    assert not ActionRoute.objects.exists()

    routing.action_route_set(tenant_id=world.tenant.id, action_type="ESCALATE_SUPPORT_RISK", connector="internal",
                             user=world.admin)
    routing.action_route_set(tenant_id=world.tenant.id, action_type="ESCALATE_SUPPORT_RISK", connector="crm",
                             user=world.admin)
    routing.action_route_delete(tenant_id=world.tenant.id, action_type="ESCALATE_SUPPORT_RISK", user=world.admin)

    assert not ActionRoute.objects.exists()
    entries = tenant_entries(world, EventType.ACTION_ROUTE_CHANGED)
    assert [(entry.reason_code, entry.data["before"], entry.data["after"]) for entry in entries] == [
        ("CREATED", None, {"connector": "internal"}),
        ("UPDATED", {"connector": "internal"}, {"connector": "crm"}),
        ("DELETED", {"connector": "crm"}, None),
    ]
    assert {entry.data["subject"]["action_type"] for entry in entries} == {"ESCALATE_SUPPORT_RISK"}
    assert entries[1].explanation == "ESCALATE_SUPPORT_RISK is now sent to the crm connector (was internal)."


@pytest.mark.parametrize(("action_type", "connector"), [("SEND_FLOWERS", "internal"), ("PREP_RENEWAL_BRIEF", "fax")])
def test_an_unknown_action_type_or_connector_is_refused(world, action_type, connector):
    with pytest.raises(ValidationFailed):
        routing.action_route_set(tenant_id=world.tenant.id, action_type=action_type, connector=connector,
                                 user=world.admin)

    assert not ActionRoute.objects.exists()


def test_a_demoted_admin_can_no_longer_change_settings(world):
    world.admin.memberships.update(role=Role.PLAN_APPROVER)

    with pytest.raises(NotAllowed):
        routing.connector_config_delete(tenant_id=world.tenant.id, connector="crm", user=world.admin)
