"""Kill switches: a tenant admin stops execution for the whole tenant or one action type."""
from uuid import UUID

from django.db import transaction

from plans import ledger
from plans.authority import Verb
from plans.errors import ValidationFailed
from plans.models import KillSwitch
from plans.plan_types import get_action_type
from plans.services.common import require_authority


def kill_switch_set(*, tenant_id: UUID, user, engaged: bool, reason: str, action_type: str = "") -> KillSwitch:
    """Flip a tenant-wide or per-action-type kill switch; takes effect on the next check, no redeploy."""
    if action_type and get_action_type(action_type) is None:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown action type {action_type!r}.")
    with transaction.atomic():
        require_authority(Verb.ADMINISTER, user=user, tenant_id=tenant_id, what="tenant")
        switch, _ = KillSwitch.objects.select_for_update().get_or_create(tenant_id=tenant_id, action_type=action_type)
        if switch.engaged == engaged:
            return switch
        switch.engaged, switch.reason, switch.updated_by = engaged, reason, ledger.user_actor(user)
        switch.save()
        ledger.kill_switch_flipped(tenant_id, actor=switch.updated_by, action_type=action_type, engaged=engaged,
                                   reason=reason)
    return switch
