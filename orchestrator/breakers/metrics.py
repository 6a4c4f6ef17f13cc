"""The breakers' Prometheus metrics (served by /metrics with orchestrator.metrics' others).

The state gauge is "mostrecent" across processes: each transition sets it in the process that made it,
and the sweep sets it again for every breaker that is not CLOSED, so a worker restart does not hide an
open breaker from the alert rules.
"""
from prometheus_client import Counter, Gauge

STATE_VALUES = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}

TRANSITIONS = Counter("revplan_breaker_transitions_total", "Circuit breaker state changes",
                      ["connector", "to_state", "cause"])
STATE = Gauge("revplan_breaker_state", "Circuit breaker state per tenant and connector: 0 closed, 1 half-open, 2 open",
              ["tenant_id", "connector"], multiprocess_mode="mostrecent")
HELD = Counter("revplan_breaker_held_total", "Step attempts a breaker held back (nothing sent)", ["connector"])
