"""Memberships: added, changed and deactivated by the tenant's admins only, each change in the tenant's chain."""
import pytest

from plans import services
from plans.errors import NotAllowed, NotFound, ValidationFailed
from plans.models import EventType, Membership, PlanLedgerEntry, Role
from plans.services.tenancy import ALREADY_A_MEMBER, LAST_TENANT_ADMIN
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def membership_entries(world):
    return list(PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.MEMBERSHIP_CHANGED)
                .order_by("chain_seq").values_list("actor", "reason_code", "data"))


@pytest.mark.parametrize("role", [Role.VIEWER, Role.SELLER, Role.PLAN_APPROVER])
def test_only_a_tenant_admin_may_add_or_change_members(world, role):
    newcomer = UserFactory()
    seller_membership = world.seller.memberships.get()

    with pytest.raises(NotAllowed):
        services.membership_add(tenant_id=world.tenant.id, username=newcomer.username, role=Role.SELLER,
                                user=world.users[role])
    with pytest.raises(NotAllowed):
        services.membership_update(membership_id=seller_membership.pk, user=world.users[role],
                                   role=Role.TENANT_ADMIN)

    assert not newcomer.memberships.exists()
    assert world.seller.memberships.get().role == Role.SELLER
    assert membership_entries(world) == []


def test_another_tenants_admin_and_a_superuser_without_membership_are_not_members(world, other_world):
    superuser = UserFactory(is_superuser=True, is_staff=True)

    for outsider in (other_world.admin, superuser):
        with pytest.raises(NotFound):
            services.membership_add(tenant_id=world.tenant.id, username=outsider.username,
                                    role=Role.TENANT_ADMIN, user=outsider)
        with pytest.raises(NotFound):
            services.membership_update(membership_id=world.seller.memberships.get().pk, user=outsider,
                                       is_active=False)

    assert not Membership.objects.filter(tenant=world.tenant, user__in=[other_world.admin, superuser]).exists()
    assert membership_entries(world) == []


def test_add_change_role_deactivate_and_come_back_each_ledgered(world):
    newcomer = UserFactory()
    actor = f"user:{world.admin.pk}"
    subject = {"user_id": newcomer.pk, "username": newcomer.username}

    membership = services.membership_add(tenant_id=world.tenant.id, username=newcomer.username, role=Role.SELLER,
                                         user=world.admin)
    services.membership_update(membership_id=membership.pk, user=world.admin, role=Role.PLAN_APPROVER)
    services.membership_update(membership_id=membership.pk, user=world.admin, is_active=False)
    again = services.membership_add(tenant_id=world.tenant.id, username=newcomer.username, role=Role.VIEWER,
                                    user=world.admin)

    assert again.pk == membership.pk
    membership.refresh_from_db()
    assert (membership.role, membership.is_active) == (Role.VIEWER, True)
    assert membership_entries(world) == [
        (actor, "CREATED", {"subject": subject, "change": "CREATED", "before": None,
                            "after": {"role": "SELLER", "is_active": True}, "changed": ["is_active", "role"]}),
        (actor, "UPDATED", {"subject": subject, "change": "UPDATED", "before": {"role": "SELLER", "is_active": True},
                            "after": {"role": "PLAN_APPROVER", "is_active": True}, "changed": ["role"]}),
        (actor, "UPDATED", {"subject": subject, "change": "UPDATED",
                            "before": {"role": "PLAN_APPROVER", "is_active": True},
                            "after": {"role": "PLAN_APPROVER", "is_active": False}, "changed": ["is_active"]}),
        (actor, "UPDATED", {"subject": subject, "change": "UPDATED",
                            "before": {"role": "PLAN_APPROVER", "is_active": False},
                            "after": {"role": "VIEWER", "is_active": True}, "changed": ["is_active", "role"]}),
    ]


def test_a_change_that_changes_nothing_writes_nothing(world):
    membership = world.seller.memberships.get()

    services.membership_update(membership_id=membership.pk, user=world.admin, role=Role.SELLER, is_active=True)
    services.membership_update(membership_id=membership.pk, user=world.admin)

    assert membership_entries(world) == []


def test_the_last_tenant_admin_cannot_step_down_but_one_of_two_can(world):
    mine = world.admin.memberships.get()

    for change in ({"role": Role.PLAN_APPROVER}, {"is_active": False}):
        with pytest.raises(ValidationFailed) as refused:
            services.membership_update(membership_id=mine.pk, user=world.admin, **change)
        assert refused.value.code == LAST_TENANT_ADMIN
    assert membership_entries(world) == []

    services.membership_update(membership_id=world.approver.memberships.get().pk, user=world.admin,
                               role=Role.TENANT_ADMIN)
    services.membership_update(membership_id=mine.pk, user=world.admin, role=Role.SELLER)

    mine.refresh_from_db()
    assert mine.role == Role.SELLER
    # ... and, no longer an admin, may change nothing more
    with pytest.raises(NotAllowed):
        services.membership_update(membership_id=mine.pk, user=world.admin, role=Role.TENANT_ADMIN)


@pytest.mark.parametrize(("username", "role", "code"), [
    ("nobody-by-that-name", Role.SELLER, "VALIDATION_ERROR"),
    (None, "OVERLORD", "VALIDATION_ERROR"),
    ("seller", Role.SELLER, ALREADY_A_MEMBER),
])
def test_refused_additions_write_nothing(world, username, role, code):
    username = world.seller.username if username == "seller" else username or UserFactory().username

    with pytest.raises(ValidationFailed) as refused:
        services.membership_add(tenant_id=world.tenant.id, username=username, role=role, user=world.admin)

    assert refused.value.code == code
    assert membership_entries(world) == []


def test_a_member_of_another_tenant_joins_this_one_as_well(world, other_world):
    services.membership_add(tenant_id=world.tenant.id, username=other_world.seller.username, role=Role.VIEWER,
                            user=world.admin)

    assert set(other_world.seller.memberships.values_list("tenant__slug", "role")) == {
        (world.tenant.slug, Role.VIEWER), (other_world.tenant.slug, Role.SELLER)}
    assert not PlanLedgerEntry.objects.filter(tenant=other_world.tenant,
                                              event_type=EventType.MEMBERSHIP_CHANGED).exists()


def test_an_inactive_membership_gives_no_authority(world):
    second_admin = UserFactory()
    MembershipFactory(user=second_admin, tenant=world.tenant, role=Role.TENANT_ADMIN, is_active=False)

    with pytest.raises(NotFound):
        services.membership_update(membership_id=world.seller.memberships.get().pk, user=second_admin,
                                   is_active=False)
