"""Accounts API: tenant-scoped list and detail, filters, 401/404, constant query counts."""
import uuid

import pytest
from rest_framework.test import APIClient

from plans.models import PlanStatus
from tests.api.helpers import assert_error, client_for
from tests.factories import AccountFactory, make_plan

ACCOUNTS = "/api/v1/accounts/"
ACCOUNT_FIELDS = {"account_id", "tenant_id", "name", "external_id", "owner_id", "renewal_date", "posture",
                  "open_plan_count", "created_at", "updated_at"}


def test_list_shows_only_the_callers_tenants_accounts_with_open_plan_counts(world, other_world):
    make_plan(account=world.account, status=PlanStatus.ACTIVE)
    make_plan(account=world.account, status=PlanStatus.DRAFT)
    make_plan(account=world.account, status=PlanStatus.ABORTED)
    body = client_for(world.viewer).get(ACCOUNTS).json()
    assert set(body) == {"count", "next", "previous", "results"}
    [row] = body["results"]
    assert set(row) == ACCOUNT_FIELDS
    assert row["account_id"] == str(world.account.id)
    assert row["tenant_id"] == str(world.tenant.id)
    assert row["owner_id"] == world.seller.pk
    assert row["open_plan_count"] == 2


def test_list_filters_by_owner_and_orders(world):
    AccountFactory(tenant=world.tenant, owner=world.approver, name="Aardvark Inc")
    api = client_for(world.viewer)
    by_owner = api.get(ACCOUNTS, {"owner": world.approver.pk}).json()["results"]
    assert [row["name"] for row in by_owner] == ["Aardvark Inc"]
    names = [row["name"] for row in api.get(ACCOUNTS, {"ordering": "-name"}).json()["results"]]
    assert names == sorted(names, reverse=True)
    assert len(names) == 2


@pytest.mark.parametrize("params", [{"owner": "me"}, {"ordering": "posture"}, {"owner": "0"}])
def test_list_refuses_bad_filters_with_400(world, params):
    assert_error(client_for(world.viewer).get(ACCOUNTS, params), 400, "VALIDATION_ERROR")


def test_detail(world):
    make_plan(account=world.account, status=PlanStatus.PAUSED)
    body = client_for(world.viewer).get(f"{ACCOUNTS}{world.account.id}/").json()
    assert set(body) == ACCOUNT_FIELDS
    assert body["name"] == world.account.name
    assert body["renewal_date"] == world.account.renewal_date.isoformat()
    assert body["open_plan_count"] == 1


def test_another_tenants_or_an_unknown_account_is_404(world, other_world):
    api = client_for(world.admin)
    for account_id in (other_world.account.id, uuid.uuid4()):
        assert_error(api.get(f"{ACCOUNTS}{account_id}/"), 404, "NOT_FOUND")
    assert api.get(ACCOUNTS, {"owner": other_world.seller.pk}).json()["count"] == 0


def test_unauthenticated_is_401(world):
    for url in (ACCOUNTS, f"{ACCOUNTS}{world.account.id}/"):
        assert_error(APIClient().get(url), 401, "NOT_AUTHENTICATED")


def test_list_query_count_is_constant_as_accounts_and_plans_grow(world, django_assert_max_num_queries):
    api = client_for(world.viewer)
    with django_assert_max_num_queries(5) as small:
        assert api.get(ACCOUNTS).status_code == 200
    for _ in range(20):
        account = AccountFactory(tenant=world.tenant, owner=world.seller)
        make_plan(account=account, status=PlanStatus.DRAFT)
    with django_assert_max_num_queries(len(small.captured_queries)):
        body = api.get(ACCOUNTS).json()
    assert body["count"] == 21
