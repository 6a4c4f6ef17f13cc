"""Which settings a connector gets: the deployment's or the tenant's own, never a mix of the two.

The rule (issue 13): a tenant config that sets its own endpoint (CRM `base_url`, CalDAV `url` or
`calendar_url`) gets only its own settings plus the deployment's non-secret tunables
(`timeout_seconds`); it never receives the deployment's api key, CalDAV user or password, which
belong to the operator's endpoint. A config without an endpoint runs on the deployment's endpoint
with the deployment's settings (the operator's, trusted); only the tunables may be the tenant's.

A tenant's credentials without its own endpoint are not sent to the deployment's endpoint either:
they would hand the tenant's secret to the operator's server and act there under an identity the
operator did not configure. Saving such a config is refused (`validate_connector_settings`); one
saved before that rule is run with the deployment's settings, the ignored keys named in a warning.
The same goes for `calendar` (a calendar name): on the deployment's server each tenant has its own
`revplan-<slug>` calendar, and naming another would reach another tenant's.
"""
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from orchestrator.execution.connectors.endpoints import EndpointRefused, parse_tenant_endpoint, validate_tenant_endpoint

# A tenant's timeout is capped: a try must end well within the execution lease (REVPLAN_EXECUTION_LEASE_SECONDS).
MAX_TENANT_TIMEOUT_SECONDS = 60.0

ENDPOINT_KEYS = {"crm": ("base_url",), "calendar": ("url", "calendar_url"), "internal": ()}
# Sent to the endpoint to authenticate; masked wherever a config is shown or ledgered.
SECRET_KEYS = {"crm": ("api_key",), "calendar": ("password",), "internal": ()}
CREDENTIAL_KEYS = {"crm": ("api_key",), "calendar": ("username", "password"), "internal": ()}
# Meaningful only on the tenant's own server.
OWN_SERVER_KEYS = {"crm": (), "calendar": ("calendar",), "internal": ()}
TUNABLE_KEYS = {"crm": ("timeout_seconds",), "calendar": ("timeout_seconds",), "internal": ()}


def known_keys(connector: str) -> tuple[str, ...]:
    return (ENDPOINT_KEYS.get(connector, ()) + CREDENTIAL_KEYS.get(connector, ())
            + OWN_SERVER_KEYS.get(connector, ()) + TUNABLE_KEYS.get(connector, ()))


def _is_set(value) -> bool:
    return value not in (None, "")


@dataclass(frozen=True)
class ConnectorSettings:
    """What a connector is built with. `tenant_endpoint`: the endpoint is the tenant's, so it is guarded."""

    values: dict
    tenant_endpoint: bool
    ignored_keys: tuple[str, ...] = field(default=())


def effective_settings(connector: str, tenant_settings: dict | None, defaults: dict) -> ConnectorSettings:
    own = {key: value for key, value in (tenant_settings or {}).items() if _is_set(value)}
    tunables = TUNABLE_KEYS.get(connector, ())
    if any(key in own for key in ENDPOINT_KEYS.get(connector, ())):
        values = {key: defaults[key] for key in tunables if _is_set(defaults.get(key))}
        values.update({key: value for key, value in own.items() if key in known_keys(connector)})
        if _is_set(values.get("timeout_seconds")):
            values["timeout_seconds"] = min(float(values["timeout_seconds"]), MAX_TENANT_TIMEOUT_SECONDS)
        return ConnectorSettings(values, tenant_endpoint=True)
    values = dict(defaults)
    values.update({key: value for key, value in own.items() if key in tunables})
    if "timeout_seconds" in own:
        values["timeout_seconds"] = min(float(own["timeout_seconds"]), MAX_TENANT_TIMEOUT_SECONDS)
    return ConnectorSettings(values, tenant_endpoint=False,
                             ignored_keys=tuple(sorted(key for key in own if key not in tunables)))


def validate_connector_settings(connector: str, settings) -> None:
    """Refuse (django ValidationError, one message per problem, each naming its key) a tenant config
    the rules above would not use as written."""
    if not isinstance(settings, dict):
        raise ValidationError("The settings must be a JSON object.")
    problems: list[str] = []
    known = known_keys(connector)
    for key in sorted(set(settings) - set(known)):
        problems.append(f"{key}: not a {connector} setting (known: {', '.join(known) or 'none'}).")
    own = {key: value for key, value in settings.items() if key in known and _is_set(value)}
    for key, value in own.items():
        if key != "timeout_seconds" and not isinstance(value, str):
            problems.append(f"{key}: must be a string.")
    endpoint_keys = ENDPOINT_KEYS.get(connector, ())
    for key in endpoint_keys:
        if isinstance(own.get(key), str):
            try:
                validate_tenant_endpoint(own[key])
            except ValidationError as error:
                problems.extend(f"{key}: {message}" for message in error.messages)
    if endpoint_keys and not any(key in own for key in endpoint_keys):
        for key in CREDENTIAL_KEYS.get(connector, ()) + OWN_SERVER_KEYS.get(connector, ()):
            if key in own:
                problems.append(f"{key}: used only with your own server; set {endpoint_keys[0]} too, or leave "
                                f"{key} empty to use the deployment's {connector} connector.")
    if connector == "calendar" and "calendar_url" in own:
        if "url" not in own:
            problems.append("calendar_url: needs url (the CalDAV server) set too.")
        elif isinstance(own["url"], str) and isinstance(own["calendar_url"], str) and not _same_server(
                own["url"], own["calendar_url"]):
            problems.append("calendar_url: must be on the server that url names.")
    if "timeout_seconds" in own:
        timeout = own["timeout_seconds"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
                0 < timeout <= MAX_TENANT_TIMEOUT_SECONDS):
            problems.append(f"timeout_seconds: must be a number above 0 and at most {MAX_TENANT_TIMEOUT_SECONDS:g}.")
    if problems:
        raise ValidationError(problems, code="invalid_connector_settings")


def _same_server(url: str, other: str) -> bool:
    try:
        first, second = parse_tenant_endpoint(url), parse_tenant_endpoint(other)
    except EndpointRefused:
        return True  # already reported on the key itself
    return (first.host.lower(), first.port) == (second.host.lower(), second.port)
