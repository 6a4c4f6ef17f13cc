"""Whose settings reach which endpoint, through ExecutionService.execute against the stand-in CRM and
Radicale: the deployment's credentials never go to a tenant's endpoint, a tenant's never to the
deployment's, a tenant endpoint the guard refuses is refused on connect too, and the deployment's
own loopback defaults keep working."""
import json
import logging

import pytest

from orchestrator.execution.connectors import build_connector, connector_for
from orchestrator.execution.models import AttemptOutcome, ConnectorConfig, ExecutionAttempt, FailureClass, IntentStatus
from tests.support.crm_server import CrmServer

ESCALATE, MEETING = "ESCALATE_SUPPORT_RISK", "REQUEST_RENEWAL_MEETING"
DEPLOYMENT_KEY = "DEPLOYMENT-KEY-7f3a"
DEPLOYMENT_PASSWORD = "DEPLOYMENT-PASSWORD-91c2"


@pytest.fixture
def deployment_crm(settings, crm):
    """The operator's CRM, from the environment: the stand-in, with the deployment's API key."""
    settings.REVPLAN_CONNECTOR_DEFAULTS = {
        **settings.REVPLAN_CONNECTOR_DEFAULTS,
        "crm": {"base_url": crm.base_url, "api_key": DEPLOYMENT_KEY, "timeout_seconds": 2.0},
    }
    return crm


@pytest.fixture
def deployment_calendar(settings, radicale):
    settings.REVPLAN_CONNECTOR_DEFAULTS = {
        **settings.REVPLAN_CONNECTOR_DEFAULTS,
        "calendar": {"url": radicale.url, "username": "deploy-user", "password": DEPLOYMENT_PASSWORD,
                     "timeout_seconds": 4.0},
    }
    return radicale


@pytest.fixture
def escalation(make_intent, world):
    return lambda: make_intent(ESCALATE, approved_by=world.admin)


def all_headers(server) -> list[dict]:
    return [headers for _, _, headers, _ in server.state.requests]


# --- the deployment's credentials stay with the deployment's endpoint ---------------------------------


def test_a_tenant_crm_config_with_only_base_url_gets_no_deployment_credential(service, deployment_crm, escalation,
                                                                             world):
    with CrmServer() as tenant_crm:
        ConnectorConfig.objects.create(tenant=world.tenant, connector="crm", settings={"base_url": tenant_crm.base_url})

        intent = service.execute(escalation().id)

        assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
        ((_, path, headers, _),) = tenant_crm.state.requests
        assert path == "/tasks"
        assert "Authorization" not in headers
        assert DEPLOYMENT_KEY not in repr(headers)
        assert deployment_crm.state.requests == []  # and nothing went to the deployment's CRM


def test_a_tenant_crm_config_with_its_own_key_sends_that_key_only(service, deployment_crm, escalation, world):
    with CrmServer() as tenant_crm:
        ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                       settings={"base_url": tenant_crm.base_url, "api_key": "tenant-key"})

        intent = service.execute(escalation().id)

        assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
        assert [headers["Authorization"] for headers in all_headers(tenant_crm)] == ["Bearer tenant-key"]


def test_a_tenant_calendar_config_with_only_url_gets_no_deployment_credential(deployment_calendar, make_intent, world):
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar",
                                   settings={"url": "https://calendar.example.com/dav/"})

    connector = build_connector(make_intent(MEETING))

    assert connector.url == "https://calendar.example.com/dav/"
    assert (connector.username, connector.password) == ("revplan", "")  # the connector's default, no secret
    assert connector.timeout == 4.0  # the deployment's tunable still applies
    assert connector.tenant_endpoint


def test_the_deployment_credentials_reach_the_deployment_endpoint(service, deployment_crm, escalation, world):
    intent = service.execute(escalation().id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert [headers["Authorization"] for headers in all_headers(deployment_crm)] == [f"Bearer {DEPLOYMENT_KEY}"]


# --- a tenant's credentials stay off the deployment's endpoint ----------------------------------------


def test_a_tenant_key_without_an_endpoint_is_not_sent_to_the_deployment_crm(service, deployment_crm, escalation, world,
                                                                           caplog):
    # Saved before the rule (clean() refuses it now): the deployment's settings run, the tenant's key is ignored.
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"api_key": "TENANT-KEY-SHOULD-STAY", "timeout_seconds": 1})
    caplog.set_level(logging.WARNING, logger="orchestrator.execution.connectors")

    intent = service.execute(escalation().id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert [headers["Authorization"] for headers in all_headers(deployment_crm)] == [f"Bearer {DEPLOYMENT_KEY}"]
    (warning,) = [record for record in caplog.records if "settings ignored" in record.getMessage()]
    assert (warning.intent_id, warning.ignored_keys) == (str(intent.id), ["api_key"])
    assert "TENANT-KEY-SHOULD-STAY" not in json.dumps([vars(record) for record in caplog.records], default=str)


def test_on_the_deployment_calendar_a_tenant_cannot_name_another_tenants_calendar(deployment_calendar, make_intent,
                                                                                  world, other_world):
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar",
                                   settings={"calendar": f"revplan-{other_world.tenant.slug}", "timeout_seconds": 3})

    _, chosen = connector_for(world.tenant.id, MEETING)
    connector = build_connector(make_intent(MEETING))

    assert not chosen.tenant_endpoint
    assert chosen.ignored_keys == ("calendar",)
    assert connector.calendar_url == f"{deployment_calendar.url}deploy-user/revplan-{world.tenant.slug}/"
    assert (connector.password, connector.timeout) == (DEPLOYMENT_PASSWORD, 3.0)


def test_a_tenant_timeout_is_capped(deployment_crm, make_intent, world):
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm", settings={"timeout_seconds": 3600})

    assert build_connector(make_intent(ESCALATE, approved_by=world.admin)).timeout == 60.0


# --- refused tenant endpoints, at connect time --------------------------------------------------------


@pytest.mark.parametrize(("base_url", "problem"), [
    ("https://127.0.0.1:{port}", "its host is a loopback address"),
    ("https://10.0.0.1:{port}", "its host is a private address"),
    ("https://169.254.169.254", "its host is a link-local address"),
    ("http://crm.example.com:{port}", "it uses http:// rather than https://"),
    ("https://localhost:{port}", "its host is a loopback name"),
])
def test_a_refused_tenant_crm_endpoint_fails_permanently_before_anything_is_sent(service, settings, crm, escalation,
                                                                                  world, base_url, problem):
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = []
    port = crm.httpd.server_address[1]
    # Written past clean() (as an old row or raw SQL would be): the check on connect stands on its own.
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"base_url": base_url.format(port=port), "api_key": "k"})

    intent = service.execute(escalation().id)

    assert (intent.status, intent.failure_class) == (IntentStatus.FAILED, FailureClass.PERMANENT)
    assert intent.failure_reason == (f"The CRM endpoint was refused: {problem}; an endpoint a tenant sets must be a "
                                     "public https address.")
    assert crm.state.requests == []


def test_a_tenant_crm_name_that_resolves_to_loopback_on_connect_is_refused(service, settings, crm, dns, escalation,
                                                                          world):
    """The name passed the check on save (a public answer) and answers the loopback when the worker
    connects (DNS rebinding): the lookup on connect refuses it, and nothing reaches the loopback."""
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = []
    dns.answers["crm.rebinding.example"] = [["93.184.216.34"], ["127.0.0.1"]]
    config = ConnectorConfig(tenant=world.tenant, connector="crm",
                             settings={"base_url": f"https://crm.rebinding.example:{crm.httpd.server_address[1]}"})
    config.full_clean()  # the first answer: public
    config.save()

    intent = service.execute(escalation().id)

    assert (intent.status, intent.failure_class, intent.attempts) == (IntentStatus.FAILED, FailureClass.PERMANENT, 1)
    assert intent.failure_reason == ("The CRM endpoint was refused: its host resolves to a loopback address; an "
                                     "endpoint a tenant sets must be a public https address.")
    assert list(ExecutionAttempt.objects.filter(intent=intent).values_list("outcome", "error")) == [
        (AttemptOutcome.PERMANENT_ERROR, intent.failure_reason)
    ]
    assert crm.state.requests == []


@pytest.mark.parametrize(("url", "problem"), [
    ("https://127.0.0.1:{port}/", "its host is a loopback address"),
    ("https://10.0.0.1/", "its host is a private address"),
    ("https://169.254.169.254/", "its host is a link-local address"),
    ("http://calendar.example.com/", "it uses http:// rather than https://"),
    ("https://localhost:{port}/", "its host is a loopback name"),
])
def test_a_refused_tenant_calendar_endpoint_fails_permanently(service, settings, radicale, make_intent, world, url,
                                                              problem):
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = []
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar",
                                   settings={"url": url.format(port=radicale.port), "password": "p"})

    intent = service.execute(make_intent(MEETING).id)

    assert (intent.status, intent.failure_class) == (IntentStatus.FAILED, FailureClass.PERMANENT)
    assert intent.failure_reason == (f"The CalDAV endpoint was refused: {problem}; an endpoint a tenant sets must "
                                     "be a public https address.")


def test_a_tenant_calendar_name_that_resolves_to_loopback_on_connect_is_refused(service, settings, radicale, dns,
                                                                               make_intent, world):
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = []
    dns.answers["dav.rebinding.example"] = [["127.0.0.1"]]
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar",
                                   settings={"url": f"https://dav.rebinding.example:{radicale.port}/"})

    intent = service.execute(make_intent(MEETING).id)

    assert (intent.status, intent.failure_class, intent.attempts) == (IntentStatus.FAILED, FailureClass.PERMANENT, 1)
    assert intent.failure_reason == ("The CalDAV endpoint was refused while creating the draft meeting: its host "
                                     "resolves to a loopback address; an endpoint a tenant sets must be a public "
                                     "https address.")
    assert dns.lookups  # the refusal came from the lookup made for the connection


# --- the deployment's loopback defaults are trusted ----------------------------------------------------


def test_the_deployment_loopback_crm_over_http_still_works(service, settings, deployment_crm, escalation):
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = []

    intent = service.execute(escalation().id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert len(deployment_crm.state.posts()) == 1


def test_the_deployment_loopback_radicale_still_works(service, settings, deployment_calendar, make_intent, world):
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = []

    intent = service.execute(make_intent(MEETING).id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert intent.external_ids["calendar_url"].startswith(deployment_calendar.url)
