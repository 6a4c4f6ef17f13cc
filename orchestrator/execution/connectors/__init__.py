"""Which connector carries out an intent, with the tenant's own settings over the environment defaults."""
from django.conf import settings

from orchestrator.execution.connectors.base import Connector, ExternalRef, PermanentError, TransientError
from orchestrator.execution.connectors.calendar import CalendarConnector
from orchestrator.execution.connectors.crm import CrmConnector
from orchestrator.execution.connectors.internal import InternalConnector
from orchestrator.execution.models import ActionIntent, ActionRoute, ConnectorConfig, ConnectorName
from plans.plan_types import get_action_type

__all__ = ["Connector", "ExternalRef", "PermanentError", "TransientError", "build_connector", "connector_name_for"]


def connector_name_for(tenant_id, action_type: str) -> str:
    """The tenant's route for the action type, else the catalogue's connector."""
    routed = ActionRoute.objects.filter(tenant_id=tenant_id, action_type=action_type).values_list(
        "connector", flat=True
    ).first()
    if routed:
        return routed
    spec = get_action_type(action_type)
    if spec is None:
        raise PermanentError(f"Unknown action type {action_type!r}: no connector carries it out.")
    return spec.connector


def connector_settings(tenant_id, connector: str) -> dict:
    """Environment defaults, overridden key by key by the tenant's own config (never another tenant's)."""
    defaults = dict(settings.REVPLAN_CONNECTOR_DEFAULTS.get(connector, {}))
    own = ConnectorConfig.objects.filter(tenant_id=tenant_id, connector=connector).values_list(
        "settings", flat=True
    ).first()
    defaults.update({key: value for key, value in (own or {}).items() if value not in (None, "")})
    return defaults


def build_connector(intent: ActionIntent) -> Connector:
    name = connector_name_for(intent.tenant_id, intent.action_type)
    connector_settings_for_tenant = connector_settings(intent.tenant_id, name)
    if name == ConnectorName.INTERNAL:
        return InternalConnector(connector_settings_for_tenant)
    if name == ConnectorName.CRM:
        return CrmConnector(connector_settings_for_tenant)
    if name == ConnectorName.CALENDAR:
        return CalendarConnector(connector_settings_for_tenant, tenant_slug=intent.tenant.slug)
    raise PermanentError(f"Unknown connector {name!r} for {intent.action_type}.")
