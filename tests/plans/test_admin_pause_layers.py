"""The admin shows the pause layers: the plan page lists the open ones (kind, since, set by, explanation,
who lifts it) and the lifted ones; the plan list shows the kinds holding each PAUSED plan, without a
query per plan."""
import re

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from plans import services
from plans.models import PauseKind, PlanStatus
from tests.factories import AccountFactory, make_plan
from tests.plans.test_admin import console


def held(world, *kinds, person=False):
    plan = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE)
    for kind in kinds:
        services.plan_pause_by_policy(plan_id=plan.id, component="orchestrator", kind=kind, reason_code=f"{kind}_TEST",
                                      explanation=f"Held by {kind} for the test.")
    if person:
        services.plan_pause(plan_id=plan.id, user=world.seller, reason="Waiting on legal")
    return plan


def rows(html: str, row_class: str) -> list[str]:
    return re.findall(rf'<tr class="{row_class}" data-kind="([A-Z_]+)">', html)


def test_the_plan_page_lists_open_layers_with_who_lifts_them_and_the_lifted_ones(world):
    # given: a plan the tenant's switch held, then its owner too; the switch released since
    plan = held(world, PauseKind.KILL_SWITCH, person=True)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident")
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="over")

    page = console(world.approver).get(reverse("admin:plans_revenueplan_change", args=[plan.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert rows(html, "pause-layer") == [PauseKind.PERSON]
    assert rows(html, "lifted-layer") == [PauseKind.KILL_SWITCH]
    assert "Waiting on legal" in html
    assert f"user:{world.seller.pk}" in html  # set by
    assert "A person&#x27;s resume (the plan owner, a plan approver or a tenant admin)" in html  # who lifts it
    assert f"user:{world.admin.pk}" in html  # who lifted the switch's layer
    # and `why` on the page names the layer too
    assert "It is held by PERSON, set by" in html


def test_a_plan_no_layer_holds_says_so(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    html = console(world.approver).get(reverse("admin:plans_revenueplan_change", args=[plan.pk])).content.decode()
    assert 'id="plan-no-layers"' in html
    assert rows(html, "pause-layer") == rows(html, "lifted-layer") == []


def test_the_plan_list_shows_the_layer_kinds_of_paused_plans_in_constant_queries(world):
    client = console(world.approver)
    url = reverse("admin:plans_revenueplan_changelist")
    held(world, PauseKind.RETRY_LIMIT)
    with CaptureQueriesContext(connection) as one:
        first = client.get(url)
    for _ in range(15):
        held(world, PauseKind.KILL_SWITCH, person=True)
    make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE)
    with CaptureQueriesContext(connection) as many:
        second = client.get(url)

    assert first.status_code == second.status_code == 200
    assert len(many) == len(one), (len(one), len(many))
    kinds = re.findall(r'<span class="pause-layer" data-kind="([A-Z_]+)"', second.content.decode())
    assert sorted(kinds) == sorted([PauseKind.RETRY_LIMIT] + [PauseKind.KILL_SWITCH, PauseKind.PERSON] * 15)
