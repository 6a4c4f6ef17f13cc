"""Which connector carries out an intent, with the tenant's own settings over the environment defaults."""
import json

from django.conf import settings
from django.db import connection

from orchestrator.execution.connectors.base import Connector, ExternalRef, PermanentError, TransientError
from orchestrator.execution.connectors.calendar import CalendarConnector
from orchestrator.execution.connectors.crm import CrmConnector
from orchestrator.execution.connectors.internal import InternalConnector
from orchestrator.execution.models import ActionIntent, ConnectorName
from plans.plan_types import get_action_type

__all__ = ["Connector", "ExternalRef", "PermanentError", "TransientError", "build_connector", "connector_for"]


# The tenant's route for the action type (if any) and all its connector configs (a few rows), in one read.
_ROUTE_AND_CONFIGS = """
SELECT 'route', connector, NULL::text FROM orchestrator_actionroute WHERE tenant_id = %(tenant_id)s
    AND action_type = %(action_type)s
UNION ALL
SELECT 'config', connector, settings::text FROM orchestrator_connectorconfig WHERE tenant_id = %(tenant_id)s
"""


def connector_for(tenant_id, action_type: str) -> tuple[str, dict]:
    """The connector that carries out `action_type` for the tenant (its route, else the catalogue's) and
    its settings: the environment defaults, overridden key by key by the tenant's own config."""
    with connection.cursor() as cursor:
        cursor.execute(_ROUTE_AND_CONFIGS, {"tenant_id": tenant_id, "action_type": action_type})
        rows = cursor.fetchall()
    routed = next((connector for kind, connector, _ in rows if kind == "route"), None)
    if routed is None:
        spec = get_action_type(action_type)
        if spec is None:
            raise PermanentError(f"Unknown action type {action_type!r}: no connector carries it out.")
        routed = spec.connector
    own = next((json.loads(config) for kind, connector, config in rows if kind == "config" and connector == routed),
               None)
    merged = dict(settings.REVPLAN_CONNECTOR_DEFAULTS.get(routed, {}))
    merged.update({key: value for key, value in (own or {}).items() if value not in (None, "")})
    return routed, merged


def build_connector(intent: ActionIntent) -> Connector:
    name, connector_settings_for_tenant = connector_for(intent.tenant_id, intent.action_type)
    if name == ConnectorName.INTERNAL:
        return InternalConnector(connector_settings_for_tenant)
    if name == ConnectorName.CRM:
        return CrmConnector(connector_settings_for_tenant)
    if name == ConnectorName.CALENDAR:
        return CalendarConnector(connector_settings_for_tenant, tenant_slug=intent.tenant.slug)
    raise PermanentError(f"Unknown connector {name!r} for {intent.action_type}.")
