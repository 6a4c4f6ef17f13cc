"""Which connector carries out an intent, and with whose settings (config.py: the tenant's or the deployment's)."""
import json
import logging
from collections.abc import Iterable
from uuid import UUID

from django.conf import settings
from django.contrib.postgres.aggregates import JSONBAgg
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.db.models.functions import JSONObject

from orchestrator.execution.connectors.base import Connector, ExternalRef, PermanentError, TransientError
from orchestrator.execution.connectors.calendar import CalendarConnector
from orchestrator.execution.connectors.config import ConnectorSettings, effective_settings
from orchestrator.execution.connectors.crm import CrmConnector
from orchestrator.execution.connectors.internal import InternalConnector
from orchestrator.execution.models import ActionIntent, ActionRoute, ConnectorConfig, ConnectorName
from plans.plan_types import get_action_type

__all__ = ["Connector", "ExternalRef", "PermanentError", "RoutingTable", "TransientError", "build_connector",
           "connector_for", "connector_named", "routing_column", "routing_of", "routing_table"]

logger = logging.getLogger(__name__)


# The tenants' routes and connector configs (a few rows each), in one read for any number of tenants.
_ROUTES_AND_CONFIGS = """
SELECT 'route', tenant_id, action_type, connector, NULL::text FROM orchestrator_actionroute
    WHERE tenant_id = ANY(%(tenant_ids)s)
UNION ALL
SELECT 'config', tenant_id, NULL, connector, settings::text FROM orchestrator_connectorconfig
    WHERE tenant_id = ANY(%(tenant_ids)s)
"""


class RoutingTable:
    """The routes and connector configs of some tenants, read once: the execution spine asks it for one
    intent, the previews for every step of a page (so describing 200 steps is still one read)."""

    def __init__(self, rows: Iterable[tuple]):
        self.routes: dict[tuple[UUID, str], str] = {}
        self.configs: dict[tuple[UUID, str], dict] = {}
        for kind, tenant_id, action_type, connector, config in rows:
            if kind == "route":
                self.routes[(tenant_id, action_type)] = connector
            else:  # the routes read's text, or routing_of's decoded settings
                self.configs[(tenant_id, connector)] = json.loads(config) if isinstance(config, str) else config

    def connector_for(self, tenant_id, action_type: str) -> tuple[str, ConnectorSettings]:
        """The connector that carries out `action_type` for the tenant (its route, else the catalogue's) and
        its settings: the tenant's own when its config sets an endpoint, else the environment defaults."""
        routed = self.routes.get((tenant_id, action_type))
        if routed is None:
            spec = get_action_type(action_type)
            if spec is None:
                raise PermanentError(f"Unknown action type {action_type!r}: no connector carries it out.")
            routed = spec.connector
        own = self.configs.get((tenant_id, routed))
        return routed, effective_settings(routed, own, settings.REVPLAN_CONNECTOR_DEFAULTS.get(routed, {}))


def routing_column(tenant_ref: OuterRef) -> JSONObject:
    """The routes and connector configs of the tenant `tenant_ref` names, as one JSON column of a caller's
    read (the engine's lock for a step's outcome reads it for the step the advance after it starts)."""
    routes = (ActionRoute.objects.filter(tenant_id=tenant_ref).order_by().values("tenant_id")
              .annotate(rows=JSONBAgg(JSONObject(action_type="action_type", connector="connector"))).values("rows"))
    configs = (ConnectorConfig.objects.filter(tenant_id=tenant_ref).order_by().values("tenant_id")
               .annotate(rows=JSONBAgg(JSONObject(connector="connector", settings="settings"))).values("rows"))
    return JSONObject(routes=Subquery(routes), configs=Subquery(configs))


def routing_of(tenant_id: UUID, column: dict) -> RoutingTable:
    """routing_table([tenant_id]), from routing_column's value."""
    return RoutingTable([("route", tenant_id, row["action_type"], row["connector"], None)
                         for row in column["routes"] or ()]
                        + [("config", tenant_id, None, row["connector"], row["settings"])
                           for row in column["configs"] or ()])


def routing_table(tenant_ids: Iterable[UUID]) -> RoutingTable:
    with connection.cursor() as cursor:
        cursor.execute(_ROUTES_AND_CONFIGS, {"tenant_ids": list(set(tenant_ids))})
        return RoutingTable(cursor.fetchall())


def connector_for(tenant_id, action_type: str) -> tuple[str, ConnectorSettings]:
    return routing_table([tenant_id]).connector_for(tenant_id, action_type)


def connector_named(name: str, chosen: ConnectorSettings, *, tenant_slug: str,
                    signals_by_account: dict | None = None) -> Connector:
    """The connector `name` built with `chosen` settings. `tenant_slug` names the tenant's own calendar;
    `signals_by_account`: the accounts' recent signals, read once for a page of previews."""
    if name == ConnectorName.INTERNAL:
        return InternalConnector(chosen.values, signals_by_account=signals_by_account)
    if name == ConnectorName.CRM:
        return CrmConnector(chosen.values, tenant_endpoint=chosen.tenant_endpoint)
    if name == ConnectorName.CALENDAR:
        return CalendarConnector(chosen.values, tenant_slug=tenant_slug, tenant_endpoint=chosen.tenant_endpoint)
    raise PermanentError(f"Unknown connector {name!r}.")


def build_connector(intent: ActionIntent, *, routing: RoutingTable | None = None) -> Connector:
    """The connector for `intent`; `routing`: its tenant's routes, when the caller read them in this transaction."""
    name, chosen = (routing or routing_table([intent.tenant_id])).connector_for(intent.tenant_id, intent.action_type)
    if chosen.ignored_keys:
        # Key names only: the values may be secrets.
        logger.warning("tenant connector settings ignored: they apply only with the tenant's own endpoint", extra={
            "intent_id": str(intent.id), "connector": name, "ignored_keys": list(chosen.ignored_keys)})
    try:
        # Only the calendar needs the slug: the other connectors cost no read of the tenant.
        return connector_named(name, chosen, tenant_slug=intent.tenant.slug if name == ConnectorName.CALENDAR else "")
    except PermanentError:
        raise PermanentError(f"Unknown connector {name!r} for {intent.action_type}.") from None
