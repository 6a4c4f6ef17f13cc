"""Shared fixtures: a tenant with one member per role and an account owned by the seller."""
from dataclasses import dataclass

import pytest

from plans.models import Account, Role, Tenant
from tests.factories import AccountFactory, MembershipFactory, TenantFactory, UserFactory
from tests.support.crm_server import CrmServer
from tests.support.radicale_server import RadicaleServer


@dataclass
class World:
    tenant: Tenant
    account: Account
    users: dict  # Role -> User

    @property
    def viewer(self):
        return self.users[Role.VIEWER]

    @property
    def seller(self):
        return self.users[Role.SELLER]

    @property
    def approver(self):
        return self.users[Role.PLAN_APPROVER]

    @property
    def admin(self):
        return self.users[Role.TENANT_ADMIN]


def build_world() -> World:
    tenant = TenantFactory()
    users = {}
    for role in Role:
        user = UserFactory(username=f"{tenant.slug}-{role.value.lower()}")
        MembershipFactory(user=user, tenant=tenant, role=role)
        users[role] = user
    account = AccountFactory(tenant=tenant, owner=users[Role.SELLER])
    return World(tenant=tenant, account=account, users=users)


@pytest.fixture
def world(db) -> World:
    return build_world()


@pytest.fixture
def other_world(db) -> World:
    """A second tenant, for isolation checks."""
    return build_world()


@pytest.fixture(scope="session")
def radicale():
    """A private Radicale CalDAV server for the whole run (each tenant gets its own calendar on it)."""
    with RadicaleServer() as server:
        yield server


@pytest.fixture
def crm():
    """A scripted stand-in CRM on 127.0.0.1 that dedupes by Idempotency-Key."""
    with CrmServer() as server:
        yield server
