"""Memberships: who belongs to a tenant and in which role, changed only by that tenant's admins.

Every change is one transaction: authority (TENANT_ADMIN of the tenant, superusers included — a
superuser has no authority over a tenant it is not an admin of), the row, and a MEMBERSHIP_CHANGED
entry in the tenant's ledger chain. A membership is deactivated, never deleted: its history and the
plans its user owns keep pointing at it. A tenant always keeps one active TENANT_ADMIN.
"""
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q

from plans import ledger
from plans.errors import Conflict, NotFound, ValidationFailed
from plans.models import Membership, Role
from plans.services.common import require_admin

LAST_TENANT_ADMIN = "LAST_TENANT_ADMIN"
ALREADY_A_MEMBER = "ALREADY_A_MEMBER"


def _state(membership: Membership) -> dict:
    return {"role": membership.role, "is_active": membership.is_active}


def _require_role(role: str) -> Role:
    if role not in Role.values:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown role {role!r} (one of {', '.join(Role.values)}).")
    return Role(role)


def require_joinable(*, tenant_id: UUID, username: str):
    """The user named `username`, who is not an active member of the tenant yet; else ValidationFailed."""
    member = get_user_model().objects.filter(username=username).first()
    if member is None:
        raise ValidationFailed("VALIDATION_ERROR", f"There is no user named {username!r}.")
    if Membership.objects.filter(user=member, tenant_id=tenant_id, is_active=True).exists():
        raise ValidationFailed(ALREADY_A_MEMBER, f"{username} is already a member; change their membership instead.")
    return member


def require_an_admin_stays(membership: Membership, *, role: str, is_active: bool) -> None:
    """Refuse a change that would leave the tenant without an active TENANT_ADMIN (nobody could undo it)."""
    stays_admin = role == Role.TENANT_ADMIN and is_active
    if stays_admin or not (membership.role == Role.TENANT_ADMIN and membership.is_active):
        return
    others = Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.TENANT_ADMIN, is_active=True)
    if not others.exclude(pk=membership.pk).exists():
        raise ValidationFailed(LAST_TENANT_ADMIN, "The tenant's last active tenant admin cannot be demoted or "
                                                  "deactivated; make someone else tenant admin first.")


def membership_add(*, tenant_id: UUID, username: str, role: str, user) -> Membership:
    """Add the user named `username` to the tenant in `role` (a deactivated membership is reactivated)."""
    role = _require_role(role)
    with transaction.atomic():
        require_admin(user=user, tenant_id=tenant_id)
        member = require_joinable(tenant_id=tenant_id, username=username)
        membership = Membership.objects.select_for_update().filter(user=member, tenant_id=tenant_id).first()
        if membership is not None:  # deactivated before: the same row comes back, with its history
            before = _state(membership)
            membership.role, membership.is_active = role, True
            membership.save(update_fields=["role", "is_active"])
        else:
            before = None
            try:
                with transaction.atomic():
                    membership = Membership.objects.create(user=member, tenant_id=tenant_id, role=role)
            except IntegrityError:
                raise Conflict("CONFLICT", f"{username} was added meanwhile; reload and try again.") from None
        ledger.membership_changed(tenant_id, actor=ledger.user_actor(user), member=member, before=before,
                                  after=_state(membership))
    return membership


def membership_update(*, membership_id: int, user, role: str | None = None,
                      is_active: bool | None = None) -> Membership:
    """Change a member's role and/or (de)activate them; a change that changes nothing writes nothing."""
    if role is not None:
        role = _require_role(role)
    with transaction.atomic():
        tenant_id = Membership.objects.filter(pk=membership_id).values_list("tenant_id", flat=True).first()
        if tenant_id is None:
            raise NotFound("NOT_FOUND", "The membership does not exist.")
        require_admin(user=user, tenant_id=tenant_id)
        # The tenant's active admins and this row, locked in id order: two admins demoting each other at
        # once cannot both pass the last-admin check.
        locked = {
            row.pk: row for row in Membership.objects.select_for_update(of=("self",)).select_related("user").filter(
                Q(pk=membership_id) | Q(tenant_id=tenant_id, role=Role.TENANT_ADMIN, is_active=True)).order_by("pk")
        }
        membership = locked[membership_id]
        before = _state(membership)
        after = {"role": before["role"] if role is None else role,
                 "is_active": before["is_active"] if is_active is None else is_active}
        if after == before:
            return membership
        require_an_admin_stays(membership, **after)
        membership.role, membership.is_active = after["role"], after["is_active"]
        membership.save(update_fields=["role", "is_active"])
        ledger.membership_changed(tenant_id, actor=ledger.user_actor(user), member=membership.user, before=before,
                                  after=after)
    return membership
