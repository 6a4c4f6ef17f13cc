"""The SSRF guard on its own: which endpoints a tenant may save, what a lookup may answer, and how a
connection is tied to the vetted answer (connectors/endpoints.py, connectors/config.py)."""
import http.server
import threading

import httpx
import niquests
import pytest
from django.core.exceptions import ValidationError

from orchestrator.execution.connectors import endpoints
from orchestrator.execution.connectors.crm import CrmConnector
from orchestrator.execution.connectors.endpoints import (
    EndpointRefused,
    VettingResolver,
    resolve_vetted,
    validate_tenant_endpoint,
)
from orchestrator.execution.models import ConnectorConfig

# (url, the phrase the refusal must contain): every class of address the guard exists for.
REFUSED = [
    ("http://crm.example.com/", "http:// rather than https://"),
    ("ftp://crm.example.com/", "ftp:// rather than https://"),
    ("crm.example.com/api", "no host"),
    ("https://127.0.0.1/", "a loopback address"),
    ("https://127.8.9.10:8443/", "a loopback address"),
    ("https://[::1]/", "a loopback address"),
    ("https://[::ffff:127.0.0.1]/", "a loopback address"),
    ("https://localhost/", "a loopback name"),
    ("https://calendar.localhost./", "a loopback name"),
    ("https://10.0.0.1/", "a private address"),
    ("https://172.16.4.2/", "a private address"),
    ("https://192.168.1.1/", "a private address"),
    ("https://[fc00::1]/", "a private address"),
    ("https://[64:ff9b::a00:1]/", "a private address"),  # NAT64 form of 10.0.0.1
    ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("https://[fe80::1]/", "a link-local address"),
    ("https://0.0.0.0/", "an unspecified address"),
    ("https://[::]/", "an unspecified address"),
    ("https://224.0.0.1/", "a multicast address"),
    ("https://[ff02::1]/", "a multicast address"),
    ("https://240.0.0.1/", "a reserved address"),
    ("https://100.64.0.1/", "a carrier-grade NAT address"),
    ("https://user:secret@crm.example.com/", "credentials in the URL"),
]


@pytest.fixture
def no_allow_list(settings):
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = []


# --- on save ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "phrase"), REFUSED)
def test_a_tenant_endpoint_is_refused_on_save(no_allow_list, url, phrase):
    with pytest.raises(ValidationError) as raised:
        validate_tenant_endpoint(url)

    (message,) = raised.value.messages
    assert phrase in message
    assert "must be an https:// URL of a public host" in message


def test_a_name_that_resolves_to_loopback_is_refused_on_save(no_allow_list, dns):
    dns.answers["crm.internal.example"] = [["127.0.0.1"]]

    with pytest.raises(ValidationError, match="resolves to a loopback address"):
        validate_tenant_endpoint("https://crm.internal.example/")


def test_one_disallowed_answer_among_public_ones_is_enough_to_refuse(no_allow_list, dns):
    dns.answers["crm.mixed.example"] = [["93.184.216.34", "10.0.0.7"]]

    with pytest.raises(ValidationError, match="resolves to a private address"):
        validate_tenant_endpoint("https://crm.mixed.example/")


def test_public_https_endpoints_are_accepted(no_allow_list, dns):
    dns.answers["crm.example.com"] = [["93.184.216.34", "2606:2800:220:1::"]]

    validate_tenant_endpoint("https://crm.example.com/api/v2")
    validate_tenant_endpoint("https://93.184.216.34:8443/")
    validate_tenant_endpoint("https://[2606:2800:220:1::]/")
    # Not resolvable yet: accepted on save, since the check on connect decides (tested below).
    validate_tenant_endpoint("https://crm.not-published-yet.invalid/")


def test_the_real_resolver_refuses_localhost():
    with pytest.raises(EndpointRefused) as raised:
        resolve_vetted("localhost", 443)

    assert raised.value.problem == "its host resolves to a loopback address"


def test_the_allow_list_admits_its_hosts_only(settings):
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1"]

    validate_tenant_endpoint("http://127.0.0.1:5232/")
    with pytest.raises(ValidationError):
        validate_tenant_endpoint("http://127.0.0.2:5232/")


@pytest.mark.parametrize(("connector", "settings_value", "expected"), [
    ("crm", {"base_url": "https://169.254.169.254/"}, "base_url: 'https://169.254.169.254/' cannot be"),
    ("crm", {"base_url": "http://127.0.0.1:8000"}, "base_url: 'http://127.0.0.1:8000' cannot be"),
    ("calendar", {"url": "https://10.0.0.1/dav/"}, "url: 'https://10.0.0.1/dav/' cannot be"),
    ("calendar", {"url": "https://93.184.216.34/", "calendar_url": "https://localhost/x/"}, "calendar_url: "),
    # A tenant's secret is not sent to the deployment's endpoint: refused without the tenant's own endpoint.
    ("crm", {"api_key": "tenant-key"}, "api_key: used only with your own server; set base_url too"),
    ("calendar", {"password": "pw"}, "password: used only with your own server; set url too"),
    ("calendar", {"calendar": "revplan-globex"}, "calendar: used only with your own server"),
    ("calendar", {"calendar_url": "https://93.184.216.34/u/c/"}, "calendar_url: needs url"),
    ("calendar", {"url": "https://93.184.216.34/", "calendar_url": "https://93.184.216.35/u/c/"},
     "calendar_url: must be on the server that url names"),
    ("crm", {"timeout_seconds": 3600}, "timeout_seconds: must be a number above 0 and at most 60"),
    ("crm", {"timeout_seconds": "ten"}, "timeout_seconds: must be a number"),
    ("crm", {"base_url": "https://93.184.216.34", "token": "x"}, "token: not a crm setting"),
    ("crm", {"base_url": ["https://93.184.216.34"]}, "base_url: must be a string"),
])
def test_connector_config_clean_refuses_what_the_rules_would_not_use(no_allow_list, world, connector,
                                                                      settings_value, expected):
    config = ConnectorConfig(tenant=world.tenant, connector=connector, settings=settings_value)

    with pytest.raises(ValidationError) as raised:
        config.full_clean()

    assert any(expected in message for message in raised.value.message_dict["settings"]), raised.value.message_dict


@pytest.mark.parametrize(("connector", "settings_value"), [
    ("crm", {"base_url": "https://93.184.216.34/api", "api_key": "tenant-key", "timeout_seconds": 5}),
    ("crm", {"timeout_seconds": 2.5}),  # the deployment's CRM with a shorter timeout
    ("crm", {}),
    ("calendar", {"url": "https://93.184.216.34/dav/", "username": "u", "password": "p", "calendar": "team"}),
    ("calendar", {"url": "https://93.184.216.34/dav/", "calendar_url": "https://93.184.216.34/dav/u/team/"}),
    ("internal", {}),
])
def test_connector_config_clean_accepts_a_sound_config(no_allow_list, world, connector, settings_value):
    ConnectorConfig(tenant=world.tenant, connector=connector, settings=settings_value).full_clean()


# --- on connect: the connection goes to the vetted answer -------------------------------------------


def test_the_crm_request_is_pinned_to_the_vetted_address(no_allow_list, dns):
    dns.answers["crm.example.com"] = [["93.184.216.34"], ["127.0.0.1"]]  # a second lookup would rebind
    connector = CrmConnector({"base_url": "https://crm.example.com:8443/api"})

    ((url, headers, extensions),) = connector._targets(httpx.URL("https://crm.example.com:8443/api/tasks"))

    assert str(url) == "https://93.184.216.34:8443/api/tasks"
    assert headers == {"Host": "crm.example.com:8443"}
    assert extensions == {"sni_hostname": "crm.example.com"}  # TLS is verified against the name
    assert dns.lookups == ["crm.example.com"]  # one lookup: nothing resolves the name again


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    requests: list

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def local_http_server():
    handler = type("Handler", (_CountingHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler.requests
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "rebound.example"])
def test_the_caldav_session_resolver_refuses_what_the_guard_refuses(no_allow_list, dns, local_http_server, host):
    """Literals and names alike go through the resolver, so a CalDAV session to a tenant's server cannot
    reach the loopback, whatever the name answers by the time it connects."""
    dns.answers["rebound.example"] = [["93.184.216.34"], ["127.0.0.1"]]
    if host == "rebound.example":
        endpoints.resolve_vetted(host, 80)  # the first (public) answer, as a check before connecting would see it
    server, received = local_http_server
    resolver = VettingResolver()
    session = niquests.Session(resolver=resolver)
    session.trust_env = False

    with pytest.raises(niquests.exceptions.ConnectionError):
        session.get(f"http://{host}:{server.server_address[1]}/calendars/", timeout=2)

    assert resolver.refusal is not None
    assert resolver.refusal.problem == "its host resolves to a loopback address"
    assert received == []
