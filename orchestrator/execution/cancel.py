"""A person cancels an action before it runs (DESIGN §5: PENDING → CANCELLED), and its plan waits for them.

PENDING is an intent no worker holds: its message not taken yet, one a kill switch handed back, one
waiting for its paused plan. A running (EXECUTING) one is not cancelled: a kill switch stops it safely.
"""
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from orchestrator.execution.models import ActionIntent, FailureClass, IntentStatus
from orchestrator.execution.selectors import intent_for_user
from plans import ledger, services
from plans.authority import Verb
from plans.errors import Conflict
from plans.locking import lock_plan

INTENT_NOT_CANCELLABLE = "INTENT_NOT_CANCELLABLE"


def intent_cancel(*, intent_id: UUID, user, reason: str = "") -> ActionIntent:
    """Cancel a PENDING intent (the plan's owner, a plan approver or a tenant admin, as for a pause).

    Race-safe against a worker's claim: the claim and this cancel are both conditional UPDATEs of the
    intent's row (`WHERE status = 'PENDING'`), so PostgreSQL lets exactly one win; the loser sees the
    row changed and does nothing (the worker sends nothing, or this answers 409). This one runs under
    the plan's row lock, so the CANCELLED intent, its ledger entry, the step's new series and the
    PERSON layer commit together: no advance sees the cancelled attempt without the layer that holds
    the plan (plans.services.plan_hold_after_cancel_locked says why the step is not retried)."""
    intent = intent_for_user(user, intent_id)
    reason = (reason or "").strip()
    with transaction.atomic():
        plan = lock_plan(intent.plan_id) if intent.plan_id else None
        services.require_may_act_on_action(Verb.CANCEL_ACTION, user=user, tenant_id=intent.tenant_id, plan=plan,
                                           account_owner_id=intent.account.owner_id)
        cancelled_by = f"cancelled by {user.get_username()}" + (f": {reason}" if reason else "")
        cancelled = ActionIntent.objects.filter(pk=intent.pk, status=IntentStatus.PENDING).update(
            status=IntentStatus.CANCELLED, failure_class=FailureClass.CANCELLED, failure_reason=cancelled_by[:2000],
            finished_at=timezone.now(), lease_token=None, lease_expires_at=None,
        )
        if not cancelled:
            status = ActionIntent.objects.values_list("status", flat=True).get(pk=intent.pk)
            running = " (a running one is stopped by a kill switch)" if status == IntentStatus.EXECUTING else ""
            raise Conflict(INTENT_NOT_CANCELLABLE, f"The action is {status}; only a PENDING one, which has not "
                                                   f"started, can be cancelled{running}.")
        intent.refresh_from_db()
        ledger.action_cancelled(intent, actor=ledger.user_actor(user), reason=reason)
        if plan is not None:
            services.plan_hold_after_cancel_locked(plan, step_id=intent.step_id, attempt=intent.attempt, user=user,
                                                   reason=reason)
    return intent
