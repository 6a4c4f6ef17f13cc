"""The SSRF guard: an endpoint a tenant sets must be https to a public address, on save and on connect.

The deployment's own defaults (REVPLAN_CRM_BASE_URL, REVPLAN_CALDAV_URL) are the operator's and are
not checked here: `make run`'s Radicale on http://127.0.0.1:5232/ is one. An endpoint from a tenant's
ConnectorConfig is checked twice:

- on save, `validate_tenant_endpoint` (called by ConnectorConfig.clean) refuses another scheme than
  https, credentials in the URL, an address literal or a name that resolves to a disallowed address;
- on connect, `resolve_vetted` resolves the host once and refuses it if ANY answer is disallowed, and
  the connection is made to those vetted answers only. Nothing resolves the name a second time, so a
  DNS answer that changes between the check and the connection (DNS rebinding) is never used: the CRM
  connector pins its request to the vetted address (TLS is still verified against the name, through
  httpx's `sni_hostname`), and the CalDAV session resolves every host it connects to — redirects and
  address literals included — through `VettingResolver`.

Disallowed: loopback, private (RFC 1918, unique-local fc00::/7), link-local (169.254.0.0/16 with the
cloud metadata address 169.254.169.254, fe80::/10), unspecified, multicast, reserved, carrier-grade
NAT (100.64.0.0/10) and anything else that is not globally routable; an IPv4 address inside IPv6
(::ffff:a.b.c.d, 64:ff9b::a.b.c.d) is judged as the IPv4 address it carries.
"""
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from niquests.packages.urllib3.contrib.resolver.system import SystemResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_PORTS = {"https": 443, "http": 80}


class EndpointRefused(Exception):
    """A tenant's endpoint may not be used. `problem` is a safe phrase for stored text; `detail` is for the log."""

    def __init__(self, problem: str, *, detail: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.detail = detail


class EndpointUnresolved(Exception):
    """The endpoint's name did not resolve (usually temporary: a DNS failure, a record not yet published)."""


def address_problem(address: IPAddress) -> str | None:
    """What makes `address` unfit for a tenant's endpoint, as a phrase; None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in _NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CARRIER_GRADE_NAT, "a carrier-grade NAT address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "an address that is not public"),
    )
    return next((phrase for failed, phrase in checks if failed), None)


def is_allow_listed(host: str | None) -> bool:
    """A host in REVPLAN_TENANT_ENDPOINT_ALLOWLIST (tests and development only) skips the guard."""
    allowed = {entry.strip().lower() for entry in settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST if entry.strip()}
    return bool(host) and host.lower() in allowed


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    allow_listed: bool


def parse_tenant_endpoint(url: str) -> Endpoint:
    """The host and port of a tenant's endpoint URL, or EndpointRefused for what no lookup can fix."""
    if not isinstance(url, str) or not url.strip():
        raise EndpointRefused("it is empty")
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        raise EndpointRefused("it is not a valid URL") from None
    if not host:
        raise EndpointRefused("it names no host")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("it carries credentials in the URL (use the settings' own fields for them)")
    if is_allow_listed(host):
        return Endpoint(host, port or DEFAULT_PORTS.get(parts.scheme, 443), allow_listed=True)
    if parts.scheme != "https":
        raise EndpointRefused(f"it uses {parts.scheme or 'no scheme'}:// rather than https://")
    # RFC 6761: every name under localhost is the loopback, whatever a resolver may say today.
    if host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
        raise EndpointRefused("its host is a loopback name")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and (problem := address_problem(literal)):
        raise EndpointRefused(f"its host is {problem}", detail=host)
    return Endpoint(host, port or DEFAULT_PORTS["https"], allow_listed=False)


def resolve_vetted(host: str, port: int, family: int = socket.AF_UNSPEC, kind: int = socket.SOCK_STREAM) -> list:
    """socket.getaddrinfo(host, port), refused whole if any answer is disallowed: connect only to these."""
    try:
        records = socket.getaddrinfo(host, port, family, kind)
    except (socket.gaierror, UnicodeError) as error:
        raise EndpointUnresolved(f"{host} did not resolve: {error}") from error
    for record in records:
        address = ipaddress.ip_address(record[4][0].split("%", 1)[0])  # drop an IPv6 zone id
        if problem := address_problem(address):
            raise EndpointRefused(f"its host resolves to {problem}", detail=f"{host} -> {address}")
    if not records:
        raise EndpointUnresolved(f"{host} resolved to no address")
    return records


def validate_tenant_endpoint(url: str) -> None:
    """Refuse (django ValidationError) an endpoint a tenant may not set; call it before saving one.

    A name that does not resolve yet is accepted here: the check on connect refuses it if it later
    resolves to a disallowed address, so nothing depends on this lookup.
    """
    try:
        endpoint = parse_tenant_endpoint(url)
        if not endpoint.allow_listed:
            resolve_vetted(endpoint.host, endpoint.port)
    except EndpointUnresolved:
        return
    except EndpointRefused as refused:
        raise ValidationError(
            f"{url!r} cannot be a connector endpoint: {refused.problem}. "
            "An endpoint you set must be an https:// URL of a public host.",
            code="endpoint_refused",
        ) from None


class VettingResolver(SystemResolver):
    """The DNS resolver of a CalDAV session to a tenant's server: every connection it makes goes to vetted
    addresses only (address literals and redirect targets included, as they are resolved here too).

    A refusal surfaces from the HTTP library as a connection error; `refusal` keeps what was refused, so
    the connector can report it as a refused endpoint rather than a network failure.
    """

    def __init__(self, *patterns: str, **kwargs):
        super().__init__(*patterns, **kwargs)
        self.refusal: EndpointRefused | None = None

    def recycle(self) -> "VettingResolver":
        return self  # stateless apart from `refusal`; the session must keep this very instance

    def getaddrinfo(self, host, port, family, type, proto=0, flags=0, *, quic_upgrade_via_dns_rr=False):
        host = host.decode("ascii") if isinstance(host, bytes) else host
        try:
            return resolve_vetted(host, port, family, type)
        except EndpointRefused as refused:
            self.refusal = refused
            raise OSError(f"endpoint refused: {refused.problem}") from refused
        except EndpointUnresolved as unresolved:
            raise socket.gaierror(socket.EAI_NONAME, str(unresolved)) from unresolved
