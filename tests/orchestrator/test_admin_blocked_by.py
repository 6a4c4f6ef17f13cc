"""The admin's plan list shows what blocks each plan (orchestrator.blocked_by), in the same number of
queries for a page of 1 plan or of many."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from plans import services
from plans.models import PlanStatus, StepStatus
from tests.factories import AccountFactory, make_plan
from tests.plans.test_admin import console
from tests.support.stalls import fail_at_the_limit

pytestmark = pytest.mark.django_db


def blocked_plans(world, count: int) -> list:
    plans = []
    for index in range(count):
        plan = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE)
        if index % 2:
            services.plan_pause(plan_id=plan.id, user=world.approver, reason="Waiting on legal")
        else:
            fail_at_the_limit(plan, plan.steps.get(sequence=0))
        plans.append(plan)
    return plans


def test_the_plan_list_has_a_blocked_by_column_without_a_query_per_plan(world):
    client = console(world.approver)
    url = reverse("admin:plans_revenueplan_changelist")
    blocked_plans(world, 1)
    with CaptureQueriesContext(connection) as one:
        first = client.get(url)
    blocked_plans(world, 30)
    with CaptureQueriesContext(connection) as many:
        second = client.get(url)

    assert first.status_code == second.status_code == 200
    assert len(many) == len(one), (len(one), len(many))
    page = second.content.decode()
    assert "Blocked by" in page
    assert page.count('data-code="RETRY_LIMIT"') == 16
    assert page.count('data-code="PERSON"') == 15


def test_a_plan_free_to_move_shows_a_dash(world):
    make_plan(account=world.account, status=PlanStatus.ACTIVE, step_status=StepStatus.PENDING)
    page = console(world.approver).get(reverse("admin:plans_revenueplan_changelist")).content.decode()
    assert 'class="blocked-by"' not in page
