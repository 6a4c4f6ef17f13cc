"""The only code that changes a plan, by subject.

  common         the checks every verb makes first (authority, move, version) and the refusal shapes
  drafts         propose a plan, edit a DRAFT
  moves          plan_transition (the one place that assigns plan_status) and people's plan verbs
  approvals      what an approval covers (content digest, facts) and what changed since (pure)
  reapproval     a fresh approval of a plan whose approval's facts drifted
  plan_versions  moving in-flight plans to another version of their plan type's config (migrate_plans)
  steps          step_transition (the one place that assigns a step's status) and people's step verbs
  accounts       ownership change
  signals        signals observed about an account: the one way to record them (bounded, idempotent)
  signal_import  a file of signals (CSV or JSON Lines), checked whole, then recorded in batches
  layers, pauses pause layers: the rows, and setting or lifting them with the moves they cause;
                 the people's pause and resume
  kill_switches  a tenant admin's kill switches
  tenancy        memberships: a tenant admin adds, changes and deactivates members
  integration_tokens  a tenant admin's integration tokens (create, rotate, revoke); a secret checked
  system         the orchestrator's moves, made under the row locks it already holds

Every write: lock the rows (plans.locking), check authority, then the lifecycle, then the policy
gate, change the rows and append the ledger entry — in one transaction. A refused call changes
nothing; where the design says a refusal is itself audit-worthy (the gate said no), the refusal
entry is the only thing written. Callers use `from plans import services` and the names below.
"""
from plans.lifecycle import (
    INVALID_TRANSITION,
    REQUIRED_STEP,
    STEP_NOT_AWAITING_APPROVAL,
    STEP_NOT_FAILED,
    STEP_NOT_SKIPPABLE,
)
from plans.services.accounts import account_transfer
from plans.services.common import (
    OWNERSHIP_CHANGED,
    POLICY_GATE_REFUSED,
    VERSION_CONFLICT,
    SystemActor,
    require_admin,
    require_may_act_on_action,
)
from plans.services.drafts import plan_edit, plan_propose, require_may_propose
from plans.services.integration_tokens import (
    integration_token_authenticate,
    integration_token_create,
    integration_token_revoke,
    integration_token_rotate,
    integration_tokens_for_admin,
    integration_tokens_list,
)
from plans.services.kill_switches import kill_switch_set
from plans.services.layers import LIFTED_BY, open_layers
from plans.services.moves import plan_abort, plan_approve, plan_revise, plan_transition
from plans.services.pauses import (
    PAUSE_LAYERS_REMAIN,
    STEP_FAILED,
    pause_layer_add_locked,
    pause_layers_lift_locked,
    plan_hold_after_cancel_locked,
    plan_pause,
    plan_resume,
)
from plans.services.plan_versions import plans_migrate_plan_type
from plans.services.reapproval import APPROVAL_NOT_STALE, plan_reapprove
from plans.services.signal_import import signals_import
from plans.services.signals import RecordedSignal, outcome_signal_insert, signal_record
from plans.services.steps import step_approve, step_retry, step_skip, step_transition
from plans.services.system import (
    plan_abort_by_policy,
    plan_activate_locked,
    plan_pause_by_policy,
    plan_settle_locked,
    step_skip_by_policy,
)
from plans.services.tenancy import membership_add, membership_update

__all__ = [
    "APPROVAL_NOT_STALE",
    "INVALID_TRANSITION",
    "LIFTED_BY",
    "OWNERSHIP_CHANGED",
    "PAUSE_LAYERS_REMAIN",
    "POLICY_GATE_REFUSED",
    "REQUIRED_STEP",
    "STEP_FAILED",
    "STEP_NOT_AWAITING_APPROVAL",
    "STEP_NOT_FAILED",
    "STEP_NOT_SKIPPABLE",
    "VERSION_CONFLICT",
    "RecordedSignal",
    "SystemActor",
    "account_transfer",
    "integration_token_authenticate",
    "integration_token_create",
    "integration_token_revoke",
    "integration_token_rotate",
    "integration_tokens_for_admin",
    "integration_tokens_list",
    "kill_switch_set",
    "membership_add",
    "membership_update",
    "open_layers",
    "outcome_signal_insert",
    "pause_layer_add_locked",
    "pause_layers_lift_locked",
    "plan_abort",
    "plan_abort_by_policy",
    "plan_activate_locked",
    "plan_approve",
    "plan_edit",
    "plan_hold_after_cancel_locked",
    "plan_pause",
    "plan_pause_by_policy",
    "plan_propose",
    "plan_reapprove",
    "plan_resume",
    "plan_revise",
    "plan_settle_locked",
    "plan_transition",
    "plans_migrate_plan_type",
    "require_admin",
    "require_may_act_on_action",
    "require_may_propose",
    "signal_record",
    "signals_import",
    "step_approve",
    "step_retry",
    "step_skip",
    "step_skip_by_policy",
    "step_transition",
]
