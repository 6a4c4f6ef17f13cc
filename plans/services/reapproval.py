"""Reapproval (DESIGN §3.3): a fresh approval of a PAUSED plan's current content and facts, which lifts
the APPROVAL_STALE layer their drift set (an owner changed, a renewal date moved, a config changed)."""
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from plans import ledger, policy, selectors
from plans.authority import Verb
from plans.errors import Conflict
from plans.lifecycle import INVALID_TRANSITION
from plans.locking import lock_account_then_plan
from plans.models import PauseKind, PlanStatus, RevenuePlan, Role
from plans.schemas import plan_to_schema
from plans.services import approvals
from plans.services.common import gate_refusal, raise_committed_refusal, require_on_plan, require_version
from plans.services.layers import holding_reasons, open_layers
from plans.services.pauses import pause_layers_lift_locked

APPROVAL_NOT_STALE = "APPROVAL_NOT_STALE"


def plan_reapprove(*, plan_id: UUID, user, expected_version: int | None = None) -> RevenuePlan:
    """Approve a PAUSED plan held by APPROVAL_STALE afresh: who may approve it (a plan approver; a tenant
    admin for HIGH risk; not its creator nor anyone who edited it since its last approval) records the
    current content and facts, and the layer is lifted. The plan runs on when nothing else holds it."""
    refusal = None
    with transaction.atomic():
        # Account then plan: lifting the last layer may move the plan into ACTIVE (the conflict rule).
        plan = lock_account_then_plan(plan_id)
        membership = require_on_plan(Verb.REAPPROVE, user=user, plan=plan)
        if plan.plan_status != PlanStatus.PAUSED:
            raise Conflict(INVALID_TRANSITION, f"Only a PAUSED plan held by a stale approval can be reapproved; "
                                               f"this one is {plan.plan_status}.")
        require_version(plan, expected_version)
        layers = open_layers(plan)
        stale = [layer for layer in layers if layer.kind == PauseKind.APPROVAL_STALE]
        if not stale:
            raise Conflict(APPROVAL_NOT_STALE, "The plan's approval is not stale, so there is nothing to reapprove. "
                           + " ".join(reason.detail for reason in holding_reasons(layers)), holding_reasons(layers))
        now = timezone.now()
        steps = list(plan.steps.all())
        facts = selectors.gate_facts(plan, now=now, approver_role=Role(membership.role))
        result = policy.validate_for_reapproval(plan_to_schema(plan, steps), facts)
        actor = ledger.user_actor(user)
        if not result.valid:
            ledger.policy_rejected(plan, actor=actor, attempted="reapprove", reasons=result.reasons)
            refusal = gate_refusal(result, attempted="reapprove")
        else:
            facts_before = (plan.approval_record or {}).get("facts", {})
            plan.save(update_fields=list(approvals.record_plan_approval(plan, steps, user=user, approved_at=now)))
            facts_after = plan.approval_record["facts"]
            ledger.plan_reapproved(plan, actor=actor, role=membership.role, facts_before=facts_before,
                                   facts_after=facts_after, changes=approvals.fact_changes(facts_before, facts_after))
            pause_layers_lift_locked(plan, stale, actor=actor, why=f"reapproved by {user.get_username()}",
                                     steps=steps)
    if refusal:
        raise_committed_refusal(refusal)
    return plan
