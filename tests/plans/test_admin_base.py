"""The admin's shared parts (plans.admin_base): what every tenant-scoped list renders."""
import pytest
from django.contrib import admin

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
