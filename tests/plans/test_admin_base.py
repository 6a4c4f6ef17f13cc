"""The admin's shared parts (plans.admin_base): what every tenant-scoped list renders."""
import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import result_list
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.models import Permission
from django.template.loader import render_to_string

from plans import ledger
from plans.admin_base import FastLinksChangeList
from plans.models import IntegrationToken, PlanLedgerEntry, RevenuePlan
from tests.factories import AccountFactory, make_plan

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["Acme", 'Tom & "Jerry" <Ltd>', "Ünïcode's"])
def test_a_rows_checkbox_is_the_markup_djangos_widget_renders(world, name):
    # given an account whose name needs escaping, and a plan of it
    account = AccountFactory(tenant=world.tenant, name=name)
    plan = make_plan(account=account)
    for obj in (account, plan):
        model_admin = admin.site._registry[type(obj)]
        # when / then: the list's checkbox, written out, is byte for byte Django's widget's
        assert model_admin.action_checkbox(obj) == admin.ModelAdmin.action_checkbox(model_admin, obj)


@pytest.mark.parametrize("row_id", [None, 42, "a/b_c d?é%:@!*'()~"])
def test_a_rows_link_is_the_url_djangos_changelist_reverses(world, rf, row_id):
    # given a list of the user's accounts, and an account with a plain, a number or an awkward id
    account = AccountFactory(tenant=world.tenant)
    if row_id is not None:
        account.id = row_id
    request = rf.get("/admin/plans/account/")
    request.user = world.admin
    changelist = admin.site._registry[type(account)].get_changelist_instance(request)
    # when / then: its link is the one Django's own ChangeList reverses, row after row
    assert isinstance(changelist, FastLinksChangeList)
    for _ in range(2):
        assert changelist.url_for_result(account) == ChangeList.url_for_result(changelist, account)


@pytest.mark.parametrize("template", ["admin/plans/change_list_results.html",
                                      "admin/orchestrator/change_list_results.html"])
def test_a_lists_rows_render_as_djangos_template_renders_them(world, rf, template):
    # given a page of plans (a checkbox, a link, foreign keys and the blocked-by column a row), an account's name
    # needing escaping
    for name in ["Acme", 'Tom & "Jerry" <Ltd>']:
        make_plan(account=AccountFactory(tenant=world.tenant, name=name, owner=world.seller))
    request = rf.get("/admin/plans/revenueplan/")
    request.user = world.admin
    changelist = admin.site._registry[RevenuePlan].get_changelist_instance(request)
    changelist.formset = None  # as changelist_view sets it for a list without editable columns
    context = result_list(changelist)
    djangos = render_to_string("admin/change_list_results.html", context)
    assert len(context["results"]) == 2
    assert djangos.count('class="action-select"') == 2
    # when / then: the apps' results template writes what Django's own does (the row loop is a join there)
    assert render_to_string(template, context).strip() == djangos.strip()


SCRIPT = '"><script>alert(1)</script>'


def test_the_lists_escape_what_people_and_systems_wrote(world, client):
    """Through real requests: a name, an objective, a creator and a ledger entry holding markup come out escaped
    on every list that shows them (the rows are written without Django's per-cell loop)."""
    account = AccountFactory(tenant=world.tenant, name=f"Acme {SCRIPT}")
    plan = make_plan(account=account, objective=f"Win {SCRIPT}", created_by=f"system:{SCRIPT}")
    ledger.step_skipped(plan, step_id=plan.steps.first().step_id, actor=f"user:{SCRIPT}", reason=f"Because {SCRIPT}")
    world.admin.is_staff = True
    world.admin.save(update_fields=["is_staff"])
    world.admin.user_permissions.add(*Permission.objects.filter(
        content_type__app_label__in=["plans", "orchestrator"], codename__startswith="view_"))
    client.force_login(world.admin)
    for url in ("/admin/plans/revenueplan/", "/admin/plans/account/", "/admin/plans/planledgerentry/",
                "/admin/plans/revenueplan/open/", "/admin/plans/revenueplan/inbox/", "/admin/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"<script>alert(1)</script>" not in response.content, url
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/admin/plans/revenueplan/").content


def test_a_changelist_template_is_found_once_for_the_process():
    """Looked up on each request, each missing candidate raised an exception whose traceback kept the request's
    frames as a cycle (tests/test_template_backend.py); a list that names its own template keeps it."""
    ledger_admin, tokens_admin = admin.site._registry[PlanLedgerEntry], admin.site._registry[IntegrationToken]
    assert ledger_admin.change_list_template == "admin/change_list.html"
    assert tokens_admin.change_list_template == "admin/plans/integrationtoken/change_list.html"
