"""Orchestrator models, defined next to the code that uses them."""
from orchestrator.execution.models import (  # noqa: F401
    ActionIntent,
    ActionRoute,
    ConnectorConfig,
    ExecutionAttempt,
    InternalRecord,
)
