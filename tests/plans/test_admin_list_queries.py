"""The approvers' console lists: a page's queries do not grow with the tenant (issue 20), and a page is a page."""
import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.api.test_list_paging import _mixed_plans

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/plans/revenueplan/",
    "/admin/plans/revenueplan/?plan_status__exact=ACTIVE",
    "/admin/plans/revenueplan/?plan_type__exact=RENEWAL_DEFENSE",
    "/admin/plans/revenueplan/?risk_level__exact=HIGH",
    "/admin/plans/revenueplan/open/",
    "/admin/plans/revenueplan/inbox/",
    "/admin/plans/planledgerentry/",
    "/admin/plans/planledgerentry/?event_type__exact=PLAN_CREATED",
    "/admin/orchestrator/actionintent/",
    "/admin/orchestrator/actionintent/?status__exact=PENDING&action_type__exact=PREP_RENEWAL_BRIEF",
]


def console(user) -> Client:
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["plans", "orchestrator"],
                                                         codename__startswith="view_"))
    client = Client()
    client.force_login(user)
    return client


def test_console_list_queries_do_not_grow_with_the_tenant(world, django_assert_max_num_queries):
    client = console(world.approver)
    _mixed_plans(world, 4)
    small = {}
    for url in PAGES:
        with django_assert_max_num_queries(30) as captured:
            assert client.get(url).status_code == 200, url
        small[url] = len(captured.captured_queries)
    _mixed_plans(world, 30)
    for url in PAGES:
        with django_assert_max_num_queries(small[url]):
            assert client.get(url).status_code == 200, url
    # The plan list's known leftover (35 queries a page) is gone: it is small, and the same for 34 plans.
    assert small["/admin/plans/revenueplan/"] <= 25


def test_the_active_plans_page_is_paged_newest_first(world, monkeypatch):
    from plans import admin_views

    monkeypatch.setattr(admin_views, "OPEN_PLANS_PER_PAGE", 2)
    client = console(world.approver)
    _mixed_plans(world, 12)  # 3 ACTIVE, 3 PAUSED
    first = client.get("/admin/plans/revenueplan/open/")
    second = client.get("/admin/plans/revenueplan/open/?p=2")
    last = client.get("/admin/plans/revenueplan/open/?p=99")  # past the end: the last page, as the inbox's
    garbage = client.get("/admin/plans/revenueplan/open/?p=false")  # not a number: the first page
    rows = [row.plan for page in (first, second, client.get("/admin/plans/revenueplan/open/?p=3"))
            for row in page.context["rows"]]
    assert len(rows) == 6
    assert len({plan.pk for plan in rows}) == 6
    assert [plan.created_at for plan in rows] == sorted((plan.created_at for plan in rows), reverse=True)
    assert {plan.plan_status for plan in rows} == {"ACTIVE", "PAUSED"}
    assert first.context["page"].paginator.count == 6
    assert "page 1 of 3" in first.content.decode()
    assert [row.plan.pk for row in last.context["rows"]] == [plan.pk for plan in rows[4:]]
    assert [row.plan.pk for row in garbage.context["rows"]] == [plan.pk for plan in rows[:2]]
