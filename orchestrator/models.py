"""Orchestrator models, defined next to the code that uses them."""
from orchestrator.autonomy.models import (  # noqa: F401
    ActionTypeAutonomy,
    AutonomyDigest,
    AutonomyUsage,
    ProposalDecision,
    TenantAutonomy,
)
from orchestrator.breakers.models import BreakerState, CircuitBreaker  # noqa: F401
from orchestrator.deadlines.models import DeadlineNotice, StuckEpisode  # noqa: F401
from orchestrator.execution.models import (  # noqa: F401
    ActionIntent,
    ActionRoute,
    ConnectorConfig,
    ExecutionAttempt,
    InternalRecord,
)
