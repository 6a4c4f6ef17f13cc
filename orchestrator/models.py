"""Orchestrator models, defined next to the code that uses them."""
from orchestrator.autonomy.models import ActionTypeAutonomy, AutonomyUsage, TenantAutonomy  # noqa: F401
from orchestrator.execution.models import (  # noqa: F401
    ActionIntent,
    ActionRoute,
    ConnectorConfig,
    ExecutionAttempt,
    InternalRecord,
)
