"""revplan.compiled: a queryset compiled once returns what Django returns for it, with each call's values."""
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.db.models import OuterRef, UUIDField
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from plans.models import Account, KillSwitch, RevenuePlan
from plans.selectors import engaged_switches_of
from revplan.compiled import CompiledQuery, InArray
from tests.factories import AccountFactory

ACCOUNT_WITH_OWNER = CompiledQuery(
    lambda account_id: Account.objects.select_related("owner", "tenant")
    .annotate(switches=engaged_switches_of(OuterRef("tenant_id"))).filter(pk=account_id)[:1],
    account_id=uuid.uuid4(),
)
ACCOUNTS_IN = CompiledQuery(
    lambda account_ids: Account.objects.filter(InArray("pk", account_ids, UUIDField())).order_by("name")
    .values_list("name", flat=True),
    account_ids=[uuid.uuid4()],
)
ACCOUNT_NAMES = CompiledQuery(
    lambda tenant_id, name: Account.objects.filter(tenant_id=tenant_id, name=name).values_list("id", "name"),
    tenant_id=uuid.uuid4(), name="(a name)",
)


def test_a_compiled_read_returns_the_rows_django_returns_with_each_calls_values(world, other_world):
    # given: a switch on in the first world only
    KillSwitch.objects.create(tenant=world.tenant, action_type="PREP_RENEWAL_BRIEF", engaged=True)
    for account in (world.account, other_world.account):
        # when
        compiled = ACCOUNT_WITH_OWNER.first(account_id=account.pk)
        # then: the same instance, its select_related rows and its annotation, read in one query
        expected = (Account.objects.select_related("owner", "tenant")
                    .annotate(switches=engaged_switches_of(OuterRef("tenant_id"))).get(pk=account.pk))
        with CaptureQueriesContext(connection) as queries:
            assert (compiled.pk, compiled.owner.username, compiled.tenant.slug, compiled.switches) == (
                expected.pk, expected.owner.username, expected.tenant.slug, expected.switches)
        assert len(queries) == 0
    assert ACCOUNT_WITH_OWNER.first(account_id=world.account.pk).switches == ["PREP_RENEWAL_BRIEF"]
    assert ACCOUNT_WITH_OWNER.first(account_id=other_world.account.pk).switches == []


def test_values_of_every_type_bind_and_no_row_is_none(world):
    # given: a second account of the tenant
    AccountFactory(tenant=world.tenant, name="Second")
    # when / then: a str id is taken as the UUID the field would make of it
    assert ACCOUNT_NAMES.all(tenant_id=str(world.tenant.pk), name="Second")[0][1] == "Second"
    assert ACCOUNT_NAMES.all(tenant_id=world.tenant.pk, name="nobody") == []
    assert ACCOUNT_WITH_OWNER.first(account_id=uuid.uuid4()) is None
    with pytest.raises(ValueError, match="badly formed"):
        ACCOUNT_WITH_OWNER.first(account_id="not a uuid")


def test_a_list_of_any_length_is_one_array_parameter(world, other_world):
    second = AccountFactory(tenant=world.tenant, name="Second")
    with CaptureQueriesContext(connection) as queries:
        assert ACCOUNTS_IN.all(account_ids=[]) == []
        assert ACCOUNTS_IN.all(account_ids=[second.pk]) == ["Second"]
        many = [second.pk, world.account.pk, other_world.account.pk, uuid.uuid4()]
        assert ACCOUNTS_IN.all(account_ids=many) == sorted([second.name, world.account.name, other_world.account.name])
    # one statement a run, the list bound as one uuid[] whatever its length
    assert len(queries) == 3
    assert all('"plans_account"."id" = ANY(' in query["sql"] for query in queries)


@pytest.mark.django_db(transaction=True)
def test_select_for_update_still_needs_a_transaction():
    locked = CompiledQuery(lambda plan_id: RevenuePlan.objects.select_for_update().filter(pk=plan_id)[:1],
                           plan_id=uuid.uuid4())
    with pytest.raises(TransactionManagementError):
        locked.first(plan_id=uuid.uuid4())
    with transaction.atomic():
        assert locked.first(plan_id=uuid.uuid4()) is None


def test_a_placeholder_that_is_not_a_parameter_is_refused(world):
    # The value decides the query's shape (an `if`), so the compiled SQL would not follow it.
    branching = CompiledQuery(lambda name: Account.objects.filter(name="x" if name else "y"), name="(a name)")
    with pytest.raises(ValueError, match="placeholders not compiled"):
        branching.all(name="x")


@pytest.mark.django_db(transaction=True)
def test_each_thread_runs_on_its_own_connection():
    # given: compiled in this thread
    from tests.conftest import build_world

    world = build_world()
    ACCOUNT_NAMES.all(tenant_id=world.tenant.pk, name=world.account.name)
    used = []

    def read():
        from django.db import connection as thread_connection

        rows = ACCOUNT_NAMES.all(tenant_id=world.tenant.pk, name=world.account.name)
        used.append((rows, thread_connection.connection is not None))
        thread_connection.close()

    # when: another thread runs it
    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    # then: on that thread's connection (opened there), with the same rows
    assert used == [([(world.account.pk, world.account.name)], True)]


PLAN_CONSTRAINTS = CompiledQuery(
    lambda plan_id: RevenuePlan.objects.filter(pk=plan_id).values_list("constraints", "approval_record")[:1],
    plan_id=uuid.uuid4(),
)


def test_the_converters_are_worked_out_once_and_convert_every_run(world, monkeypatch):
    from django.db.models.sql.compiler import SQLCompiler

    from tests.factories import make_plan

    plans = [make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller),
                       constraints={"n": index, "nested": {"ok": True}}) for index in range(3)]
    original, calls = SQLCompiler.get_converters, []
    monkeypatch.setattr(SQLCompiler, "get_converters", lambda self, expressions: calls.append(1) or original(
        self, expressions))
    for plan in plans:
        expected = RevenuePlan.objects.filter(pk=plan.pk).values_list("constraints", "approval_record").get()
        assert PLAN_CONSTRAINTS.first(plan_id=plan.pk) == expected
        assert expected[0] == {"n": plan.constraints["n"], "nested": {"ok": True}}
    assert len(calls) == 3 + 1  # Django's own reads, and the compiled read's first run only
