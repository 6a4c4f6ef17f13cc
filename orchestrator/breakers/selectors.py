"""What the API and the admin show of a tenant's breakers: every connector's, with its window and held plans."""
from django.db.models import Count
from django.utils import timezone

from orchestrator.breakers import window
from orchestrator.breakers.config import GUARDED_CONNECTORS, config_for
from orchestrator.breakers.models import BreakerState, CircuitBreaker
from plans.models import PauseKind, PauseLayer


def breakers_overview(tenant_id) -> list[dict]:
    """One item per guarded connector (CLOSED when it has no row): two queries and one Redis round trip each."""
    rows = {row.connector: row for row in CircuitBreaker.objects.filter(tenant_id=tenant_id)}
    held = dict(PauseLayer.objects.filter(kind=PauseKind.BREAKER, lifted_at__isnull=True, plan__tenant_id=tenant_id)
                .values_list("scope").annotate(count=Count("id")).values_list("scope", "count"))
    now = timezone.now().timestamp()
    items = []
    for connector in GUARDED_CONNECTORS:
        row = rows.get(connector)
        config = config_for(connector)
        counts = window.window_counts(tenant_id, connector, config, now=now)
        items.append({
            "connector": connector,
            "state": row.state if row else BreakerState.CLOSED,
            "forced": row.forced if row else False,
            "changed_at": row.changed_at if row else None,
            "changed_by": row.changed_by if row else "",
            "reason_code": row.reason_code if row else "",
            "explanation": row.explanation if row else "",
            "retry_at": row.retry_at if row else None,
            "times_opened": row.times_opened if row else 0,
            "held_plans": held.get(connector, 0),
            "window": counts.as_dict() if counts else None,
            "thresholds": config.as_dict(),
        })
    return items
