"""Accounts: a change of owner (open plans follow it) and the signals observed about an account."""
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from plans import ledger, selectors
from plans.authority import Verb
from plans.errors import ValidationFailed
from plans.lifecycle import Move
from plans.locking import lock_account, lock_open_plans_of_account
from plans.models import Account, AccountSignal, PlanStatus, RevenuePlan, Role
from plans.plan_types import PLAN_TYPES
from plans.services.common import OWNERSHIP_CHANGED, require_authority, touch
from plans.services.moves import plan_transition


def account_transfer(*, account_id: UUID, new_owner_id: int, user) -> Account:
    """Ownership change: open plans follow the account; ACTIVE ones pause until someone resumes them."""
    with transaction.atomic():
        account = lock_account(account_id)
        require_authority(Verb.TRANSFER_ACCOUNT, user=user, tenant_id=account.tenant_id, what="account")
        new_owner = get_user_model().objects.filter(pk=new_owner_id).first()
        new_membership = new_owner and selectors.membership_for(new_owner, account.tenant_id)
        if not new_membership or new_membership.role == Role.VIEWER:
            raise ValidationFailed(
                "VALIDATION_ERROR", "The new owner must be an active member of the tenant who may own accounts."
            )
        old_owner_id = account.owner_id
        if old_owner_id == new_owner.pk:
            return account
        account.owner = new_owner
        account.save(update_fields=["owner", "updated_at"])
        actor = ledger.user_actor(user)
        plans = lock_open_plans_of_account(account.id)
        for plan in plans:
            plan.owner = new_owner
            if plan.plan_status == PlanStatus.ACTIVE:
                plan_transition(
                    plan, Move.PAUSE, actor=actor, reason_code=OWNERSHIP_CHANGED,
                    explanation=f"The account moved from user {old_owner_id} to user {new_owner.pk}; "
                                "the new owner or an approver must resume the plan.",
                    facts={"old_owner_id": old_owner_id, "new_owner_id": new_owner.pk},
                )
            else:
                touch(plan)
                plan.save(update_fields=["owner"])
                ledger.plan_owner_changed(plan, actor=actor, old_owner_id=old_owner_id, new_owner_id=new_owner.pk)
        ledger.account_owner_changed(
            account, actor=actor, old_owner_id=old_owner_id, new_owner_id=new_owner.pk,
            plan_ids=[plan.id for plan in plans],
        )
    return account


def signal_record(
    *, account_id: UUID, signal_type: str, observed_at=None, payload: dict | None = None
) -> AccountSignal:
    """Record something observed about an account (a renewal committed, a support risk ...).

    A signal that may meet an ACTIVE plan's objective makes the orchestrator look at that plan now:
    the tick only visits plans whose next_run_at is due, and a plan waiting for a person has none, so
    without this a renewal committed meanwhile would go unnoticed until the plan expired. The UPDATE
    waits for an advance holding the plan's row lock, so a concurrent advance cannot clear the wake-up.
    """
    now = timezone.now()
    woken_plan_types = [
        config.plan_type for config in PLAN_TYPES.values() if signal_type in config.objective_signal_types
    ]
    with transaction.atomic():
        signal = AccountSignal.objects.create(
            account_id=account_id, signal_type=signal_type, observed_at=observed_at or now, payload=payload or {}
        )
        if woken_plan_types:
            RevenuePlan.objects.filter(
                account_id=account_id, plan_type__in=woken_plan_types, plan_status=PlanStatus.ACTIVE
            ).update(next_run_at=now)
    return signal
