"""Circuit breakers per (tenant, connector): the automatic control that stops sending to a connector that
is plainly failing (kill switches stay the human one).

  models    CircuitBreaker: the state of record, one row per (tenant, connector)
  config    the thresholds, per connector from settings
  window    Redis: the sliding window of tries (buckets), the cached state, the probe slot
  machine   the table of moves and the one function that makes them (row, ledger, cache, metric)
  services  gate() before a try, record() after it, breaker_force() for a tenant admin
  plans     holding the plans a breaker stopped (BREAKER layer) and lifting them
  sweep     the beat job: cool-down over → half-open + probe; a lost probe; leftover layers
  selectors what the API and the admin show

The execution spine's hook, in order: `gate(tenant_id, connector, holder=plan_id)` before the first try
(not allowed: `hand_back` the claim and raise `refusal(...)`); `record(...)` after each try (not
allowed: stop retrying, the same way); the engine catches BreakerOpen and calls `hold_plan`.
"""
