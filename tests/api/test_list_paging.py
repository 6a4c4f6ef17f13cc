"""List paging (revplan.api.pagination): a bounded count, strict page parameters, stable orderings, and query
counts that do not grow with the tenant."""
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.execution.intents import intent_create
from plans.models import PlanStatus, PlanStep, StepStatus
from plans.pagination import BoundedCountPaginator
from plans.waits import refresh_all
from tests.api.helpers import assert_error, client_for
from tests.factories import AccountFactory, make_plan

pytestmark = pytest.mark.django_db

PLANS = "/api/v1/plans/"
ORDERINGS = ["created_at", "updated_at", "expires_at", "next_run_at", "plan_status", "risk_level"]


@pytest.mark.parametrize("params", [
    {"page": "false"}, {"page": "abc"}, {"page": "-1"}, {"page": "1.5"}, {"page": ""}, {"page": "1" * 40},
    {"page_size": "0"}, {"page_size": "false"}, {"page_size": "-5"}, {"page_size": "9" * 40},
])
def test_a_malformed_page_or_page_size_is_a_400_on_every_list(world, params):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    api = client_for(world.admin)
    for url in (PLANS, "/api/v1/inbox/", f"{PLANS}{plan.id}/ledger/", "/api/v1/accounts/",
                f"/api/v1/accounts/{world.account.id}/executions/"):
        assert_error(api.get(url, params), 400, "VALIDATION_ERROR")


def test_a_page_past_the_last_is_still_a_404_and_a_large_page_size_is_the_maximum(world):
    make_plan(account=world.account)
    api = client_for(world.viewer)
    assert_error(api.get(PLANS, {"page": 2}), 404, "NOT_FOUND")
    assert_error(api.get(PLANS, {"page": 0}), 404, "NOT_FOUND")
    response = api.get(PLANS, {"page_size": 100000})
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_the_count_stops_at_its_limit_and_the_pages_reach_that_many(world, monkeypatch):
    monkeypatch.setattr(BoundedCountPaginator, "count_limit", 3)
    now = timezone.now()
    made = [make_plan(account=world.account, status=PlanStatus.ABORTED, created_at=now - timedelta(minutes=minutes))
            for minutes in range(5)]
    api = client_for(world.viewer)
    first = api.get(PLANS, {"page_size": 2}).json()
    # the shape is unchanged: 3 means "3 or more"
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 3
    assert [row["plan_id"] for row in first["results"]] == [str(made[0].id), str(made[1].id)]
    second = api.get(first["next"]).json()
    assert [row["plan_id"] for row in second["results"]] == [str(made[2].id)]
    assert second["next"] is None
    refused = assert_error(api.get(PLANS, {"page_size": 2, "page": 3}), 404, "NOT_FOUND")
    assert "first 3 items" in refused["detail"]
    # the reverse order reaches the others
    oldest = api.get(PLANS, {"page_size": 2, "ordering": "created_at"}).json()["results"]
    assert [row["plan_id"] for row in oldest] == [str(made[4].id), str(made[3].id)]
    # exact below the limit
    assert api.get(PLANS, {"status": "DRAFT"}).json()["count"] == 0


@pytest.mark.parametrize("ordering", [sign + key for key in ORDERINGS for sign in ("", "-")])
def test_every_ordering_pages_through_plans_with_equal_keys_without_repeating_or_skipping(world, ordering):
    now = timezone.now()
    made = {str(make_plan(account=world.account, status=PlanStatus.ABORTED, created_at=now, updated_at=now,
                          expires_at=now + timedelta(days=3)).id) for _ in range(5)}
    api = client_for(world.viewer)
    seen, url, params = [], PLANS, {"ordering": ordering, "page_size": 2}
    while url:
        body = api.get(url, params).json()
        seen += [row["plan_id"] for row in body["results"]]
        url, params = body["next"], None
    assert sorted(seen) == sorted(made)


def _mixed_plans(world, count: int) -> None:
    """Plans of every kind a page shows: a DRAFT, an ACTIVE one with a step waiting for approval and an intent,
    a PAUSED one, a finished one (each kind adds its own fixed reads to a page)."""
    for index in range(count):
        account = AccountFactory(tenant=world.tenant, owner=world.seller)
        status = [PlanStatus.DRAFT, PlanStatus.ACTIVE, PlanStatus.PAUSED, PlanStatus.COMPLETED][index % 4]
        plan = make_plan(account=account, status=status)
        if status == PlanStatus.ACTIVE:
            step = plan.steps.order_by("sequence").first()
            PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.PENDING_APPROVAL, attempts=1)
            intent_create(tenant_id=world.tenant.id, account_id=account.id, action_type=step.action_type,
                          expires_at=plan.expires_at, approved_by=world.approver, plan_id=plan.id,
                          step_id=step.step_id, attempt=1)
    refresh_all()  # the inbox rows of the new plans, as the beat or an earlier read would have built them


@pytest.mark.parametrize("params", [
    {}, {"ordering": "next_run_at"}, {"ordering": "-plan_status"}, {"ordering": "risk_level"},
    {"status": ["ACTIVE", "PAUSED"]}, {"plan_type": "RENEWAL_DEFENSE"},
])
def test_list_query_counts_do_not_grow_with_the_tenant(world, params, django_assert_max_num_queries):
    api = client_for(world.approver)
    _mixed_plans(world, 4)
    urls = [PLANS, "/api/v1/inbox/", "/api/v1/accounts/"]
    small = {}
    for url in urls:
        with django_assert_max_num_queries(20) as captured:
            assert api.get(url, params if url == PLANS else {}).status_code == 200
        small[url] = len(captured.captured_queries)
    _mixed_plans(world, 30)
    for url in urls:
        with django_assert_max_num_queries(small[url]):
            assert api.get(url, params if url == PLANS else {}).status_code == 200
