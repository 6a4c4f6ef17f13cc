"""Kill switches: a tenant admin stops execution for the whole tenant or one action type; releasing
one lifts its KILL_SWITCH layer from every plan it paused (DESIGN §3.2)."""
from uuid import UUID

from django.db import transaction

from plans import ledger
from plans.authority import Verb
from plans.errors import ValidationFailed
from plans.locking import lock_account, lock_plan
from plans.models import KillSwitch, PauseKind, PauseLayer
from plans.plan_types import get_action_type
from plans.services.common import require_authority
from plans.services.layers import open_layers
from plans.services.pauses import pause_layers_lift_locked


def kill_switch_set(*, tenant_id: UUID, user, engaged: bool, reason: str, action_type: str = "") -> KillSwitch:
    """Flip a tenant-wide or per-action-type kill switch; takes effect on the next check, no redeploy."""
    if action_type and get_action_type(action_type) is None:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown action type {action_type!r}.")
    with transaction.atomic():
        require_authority(Verb.ADMINISTER, user=user, tenant_id=tenant_id, what="tenant")
        switch, _ = KillSwitch.objects.select_for_update().get_or_create(tenant_id=tenant_id, action_type=action_type)
        if switch.engaged != engaged:
            switch.engaged, switch.reason, switch.updated_by = engaged, reason, ledger.user_actor(user)
            switch.save()
            ledger.kill_switch_flipped(tenant_id, actor=switch.updated_by, action_type=action_type,
                                       engaged=engaged, reason=reason)
        elif engaged:
            return switch
        if not engaged:
            # Also when it was off already: releasing again is how a person clears a layer that a pause
            # racing the first release set (the tick's sweep would too, at its next pass).
            _lift_switch_layers(tenant_id, action_type=action_type, actor=ledger.user_actor(user),
                                why=f"the {action_type or 'tenant'} kill switch was released "
                                    f"({reason or 'no reason given'})")
    return switch


def _lift_switch_layers(tenant_id: UUID, *, action_type: str, actor: str, why: str) -> None:
    """Every plan the released switch holds: its layer lifted; a plan with no other layer runs again.

    In the flip's transaction, so a released switch leaves no plan held by it. Every account is locked
    before any plan, both in id order (moves into ACTIVE lock the account first; two releases at once
    then take the same locks in the same order and cannot deadlock); the conflict rule is re-checked
    on resume."""
    held = sorted(set(PauseLayer.objects.filter(
        kind=PauseKind.KILL_SWITCH, scope=action_type, lifted_at__isnull=True, plan__tenant_id=tenant_id,
    ).values_list("plan__account_id", "plan_id")))
    for account_id in sorted({account_id for account_id, _ in held}):
        lock_account(account_id)
    for plan_id in sorted(plan_id for _, plan_id in held):
        plan = lock_plan(plan_id)
        layers = [layer for layer in open_layers(plan)
                  if layer.kind == PauseKind.KILL_SWITCH and layer.scope == action_type]
        pause_layers_lift_locked(plan, layers, actor=actor, why=why)
