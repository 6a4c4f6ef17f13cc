"""Accounts: a change of owner (open plans follow it). Signals observed about an account: services.signals."""
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import transaction

from plans import ledger, selectors
from plans.authority import Verb
from plans.errors import ValidationFailed
from plans.locking import lock_account, lock_open_plans_of_account
from plans.models import Account, PauseKind, PlanStatus, Role
from plans.services.common import OWNERSHIP_CHANGED, require_authority, touch
from plans.services.layers import layers_lift, open_layers
from plans.services.pauses import pause_layer_add_locked


def account_transfer(*, account_id: UUID, new_owner_id: int | None, user, reason: str) -> Account:
    """Ownership change: open plans follow the account. The owner is one of an approval's facts, so an
    ACTIVE or PAUSED plan is held by an APPROVAL_STALE layer until an approver reapproves it, and an
    OWNER_INACTIVE layer (the old owner left) is lifted: the stale approval holds the plan instead.
    A DRAFT or APPROVED plan is not held (nothing of it runs): the gate before its first step sees the
    drift. `reason` (required: why the account changes hands) is kept in every entry the change writes."""
    reason = (reason or "").strip()
    with transaction.atomic():
        account = lock_account(account_id)
        require_authority(Verb.TRANSFER_ACCOUNT, user=user, tenant_id=account.tenant_id, what="account")
        if not reason:
            raise ValidationFailed("VALIDATION_ERROR", "A change of owner needs a reason.")
        new_owner = get_user_model().objects.filter(pk=new_owner_id).first() if new_owner_id else None
        new_membership = new_owner and selectors.membership_for(new_owner, account.tenant_id)
        if not new_membership or new_membership.role == Role.VIEWER or not new_owner.is_active:
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
            plan_owner_before, version_before = plan.owner_id, plan.version
            plan.owner = new_owner
            plan.save(update_fields=["owner"])
            ledger.plan_owner_changed(plan, actor=actor, old_owner_id=old_owner_id, new_owner_id=new_owner.pk,
                                      reason=reason)
            if plan.plan_status not in (PlanStatus.ACTIVE, PlanStatus.PAUSED):
                touch(plan)
                continue
            inactive = [layer for layer in open_layers(plan) if layer.kind == PauseKind.OWNER_INACTIVE]
            pause_layer_add_locked(
                plan, kind=PauseKind.APPROVAL_STALE, actor=actor, reason_code=OWNERSHIP_CHANGED,
                explanation=f"The account moved from user {old_owner_id} to user {new_owner.pk} ({reason}); the "
                            "plan was approved with another owner, so an approver must reapprove it.",
                evidence={"changed": [{"field": "owner_id", "before": plan_owner_before, "after": new_owner.pk}],
                          "reason": reason},
            )
            layers_lift(plan, inactive, actor=actor,
                        why=f"the account now belongs to user {new_owner.pk}, an active member")
            if plan.version == version_before:  # the plan was held already: the owner is still a change
                touch(plan)
        ledger.account_owner_changed(
            account, actor=actor, old_owner_id=old_owner_id, new_owner_id=new_owner.pk,
            plan_ids=[plan.id for plan in plans], reason=reason,
        )
    return account

