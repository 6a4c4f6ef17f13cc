"""The append-only plan ledger: one writer function per event, the hash chains, verification.

  chain          append an entry to its chain (plan or tenant), the hash, actor labels; held(): a block's
                 plan-chain entries written in one statement
  plan_events    writers for a plan's chain (the plan's moves, edits, its steps)
  pause_events   writers for a plan's chain: a pause layer set or lifted
  approval_events  writers for a plan's chain: an approval voided, a reapproval, a changed FAILED step reset
  tenant_events  writers for a tenant's chain (ownership, kill switches, autonomy, digests)
  breaker_events writers for a tenant's chain: a connector's circuit breaker changed state
  action_events  writers for the execution spine's intent events
  settings_events  writers for a tenant's chain: connector settings, action routes, memberships
  token_events   writers for a tenant's chain: an integration token created, rotated, revoked
  signal_events  writers for a tenant's chain: signals taken from outside, one by one or an import's batch
  operator_events  writers for a plan's chain: an incident's redrive, a move to another plan-type version
  deadline_events  reminders and escalations (tenant chain, one entry per run), a missed deadline, a stuck plan
  verify         walk the chains, report what was changed or cut

Callers use `from plans import ledger` and the names below; entries are written only through the
event writers, never by appending directly (STYLE §5).
"""
from plans.ledger.action_events import (
    COMPENSATION_FAILED,
    action_blocked,
    action_cancelled,
    action_compensated,
    action_compensation_failed,
    action_executed,
    action_expired,
    action_failed,
    action_retry_scheduled,
)
from plans.ledger.approval_events import approval_voided, plan_reapproved, step_reset
from plans.ledger.breaker_events import breaker_closed, breaker_forced, breaker_half_opened, breaker_opened
from plans.ledger.chain import (
    GENESIS_HASH,
    canonical_fields,
    chain_head_columns,
    compute_hash,
    held,
    note_chain_heads,
    system_actor,
    user_actor,
    write_held,
)
from plans.ledger.deadline_events import deadline_missed, deadlines_noticed, stuck_detected
from plans.ledger.operator_events import incident_redriven, plan_type_migrated
from plans.ledger.pause_events import pause_layer_added, pause_layer_lifted
from plans.ledger.plan_events import (
    STOP_EVENTS,
    activation_blocked,
    plan_created,
    plan_edited,
    plan_moved,
    plan_owner_changed,
    policy_rejected,
    step_approved,
    step_attempt_started,
    step_awaiting_approval,
    step_closed,
    step_retried,
    step_retry_scheduled,
    step_skipped,
)
from plans.ledger.settings_events import action_route_changed, connector_config_changed, membership_changed
from plans.ledger.signal_events import signal_recorded, signals_imported
from plans.ledger.tenant_events import (
    DIGEST_OVERLAP,
    account_owner_changed,
    autonomy_changed,
    kill_switch_flipped,
    tenant_digest,
)
from plans.ledger.token_events import (
    integration_token_created,
    integration_token_revoked,
    integration_token_rotated,
)
from plans.ledger.verify import VerifyReport, verify_ledger

__all__ = [
    "COMPENSATION_FAILED",
    "DIGEST_OVERLAP",
    "GENESIS_HASH",
    "STOP_EVENTS",
    "VerifyReport",
    "account_owner_changed",
    "action_blocked",
    "action_cancelled",
    "action_compensated",
    "action_compensation_failed",
    "action_executed",
    "action_expired",
    "action_failed",
    "action_retry_scheduled",
    "action_route_changed",
    "activation_blocked",
    "approval_voided",
    "autonomy_changed",
    "breaker_closed",
    "breaker_forced",
    "breaker_half_opened",
    "breaker_opened",
    "canonical_fields",
    "chain_head_columns",
    "compute_hash",
    "connector_config_changed",
    "deadline_missed",
    "deadlines_noticed",
    "held",
    "incident_redriven",
    "integration_token_created",
    "integration_token_revoked",
    "integration_token_rotated",
    "kill_switch_flipped",
    "membership_changed",
    "note_chain_heads",
    "pause_layer_added",
    "pause_layer_lifted",
    "plan_created",
    "plan_edited",
    "plan_moved",
    "plan_owner_changed",
    "plan_reapproved",
    "plan_type_migrated",
    "policy_rejected",
    "signal_recorded",
    "signals_imported",
    "step_approved",
    "step_attempt_started",
    "step_awaiting_approval",
    "step_closed",
    "step_reset",
    "step_retried",
    "step_retry_scheduled",
    "step_skipped",
    "stuck_detected",
    "system_actor",
    "tenant_digest",
    "user_actor",
    "verify_ledger",
    "write_held",
]
