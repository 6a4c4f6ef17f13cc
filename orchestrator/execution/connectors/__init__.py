"""Which connector carries out an intent, and with whose settings (config.py: the tenant's or the deployment's)."""
import json
import logging

from django.conf import settings
from django.db import connection

from orchestrator.execution.connectors.base import Connector, ExternalRef, PermanentError, TransientError
from orchestrator.execution.connectors.calendar import CalendarConnector
from orchestrator.execution.connectors.config import ConnectorSettings, effective_settings
from orchestrator.execution.connectors.crm import CrmConnector
from orchestrator.execution.connectors.internal import InternalConnector
from orchestrator.execution.models import ActionIntent, ConnectorName
from plans.plan_types import get_action_type

__all__ = ["Connector", "ExternalRef", "PermanentError", "TransientError", "build_connector", "connector_for"]

logger = logging.getLogger(__name__)


# The tenant's route for the action type (if any) and all its connector configs (a few rows), in one read.
_ROUTE_AND_CONFIGS = """
SELECT 'route', connector, NULL::text FROM orchestrator_actionroute WHERE tenant_id = %(tenant_id)s
    AND action_type = %(action_type)s
UNION ALL
SELECT 'config', connector, settings::text FROM orchestrator_connectorconfig WHERE tenant_id = %(tenant_id)s
"""


def connector_for(tenant_id, action_type: str) -> tuple[str, ConnectorSettings]:
    """The connector that carries out `action_type` for the tenant (its route, else the catalogue's) and
    its settings: the tenant's own when its config sets an endpoint, else the environment defaults."""
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
    return routed, effective_settings(routed, own, settings.REVPLAN_CONNECTOR_DEFAULTS.get(routed, {}))


def build_connector(intent: ActionIntent) -> Connector:
    name, chosen = connector_for(intent.tenant_id, intent.action_type)
    if chosen.ignored_keys:
        # Key names only: the values may be secrets.
        logger.warning("tenant connector settings ignored: they apply only with the tenant's own endpoint", extra={
            "intent_id": str(intent.id), "connector": name, "ignored_keys": list(chosen.ignored_keys)})
    if name == ConnectorName.INTERNAL:
        return InternalConnector(chosen.values)
    if name == ConnectorName.CRM:
        return CrmConnector(chosen.values, tenant_endpoint=chosen.tenant_endpoint)
    if name == ConnectorName.CALENDAR:
        return CalendarConnector(chosen.values, tenant_slug=intent.tenant.slug, tenant_endpoint=chosen.tenant_endpoint)
    raise PermanentError(f"Unknown connector {name!r} for {intent.action_type}.")
