"""revplan.rows: the values of our own inserts are what Django's save would write."""
import uuid
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator.execution.models import ActionIntent, ExecutionAttempt
from plans.models import AccountSignal, PlanLedgerEntry
from revplan.rows import insert_columns, insert_values
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def django_values(fields, instance) -> list:
    return [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]


def comparable(values) -> list:
    # Jsonb adapters compare by identity: by what they wrap instead.
    return [getattr(value, "obj", value) for value in values]


@pytest.mark.parametrize("model", [PlanLedgerEntry, ActionIntent, ExecutionAttempt, AccountSignal])
def test_every_column_gets_the_value_django_would_write(world, model, monkeypatch):
    plan_id, now = uuid.uuid4(), timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)  # what an auto_now field's pre_save stamps
    values = {
        "tenant_id": world.tenant.id, "plan_id": plan_id, "account_id": world.account.id, "step_id": uuid.uuid4(),
        "event_type": "PLAN_ACTIVATED", "actor": "system:tests", "data": {"n": 1}, "occurred_at": now,
        "observed_at": now, "chain_seq": 3, "entry_hash": "a" * 64, "prev_hash": "b" * 64, "payload": {"x": [1]},
        "attempt": 2, "status": "PENDING", "expires_at": now + timedelta(days=1), "created_at": now,
        "idempotency_key": "k", "action_type": "PREP_RENEWAL_BRIEF", "signal_type": "ACTION_EXECUTED",
    }
    fields = {field.attname for field in model._meta.concrete_fields}
    instance = model(**{name: value for name, value in values.items() if name in fields})
    columns, _, _ = insert_columns(model, with_pk=True)
    assert comparable(insert_values(columns, instance)) == comparable(django_values(columns, instance))


def test_a_naive_datetime_or_a_str_id_is_prepared_by_django(world):
    naive = datetime(2026, 1, 2, 3, 4, 5)  # naive: the case under test
    entry = PlanLedgerEntry(tenant_id=str(world.tenant.id), occurred_at=naive, chain_seq=True)
    fields, _, _ = insert_columns(PlanLedgerEntry)
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        expected = django_values(fields, entry)
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        prepared = insert_values(fields, entry)
    assert comparable(prepared) == comparable(expected)
    by_name = dict(zip([field.attname for field in fields], prepared, strict=True))
    assert by_name["tenant_id"] == world.tenant.id
    assert by_name["occurred_at"].tzinfo is not None
    assert by_name["chain_seq"] == 1  # a bool where an int goes: Django's int()


def test_update_row_writes_what_save_with_update_fields_writes(world):
    from django.db import DatabaseError

    from plans.models import PlanStatus, RevenuePlan
    from revplan.rows import update_row
    from tests.factories import make_plan

    ours, django = (make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller)) for _ in range(2))
    later = timezone.now() + timedelta(hours=1)
    for plan in (ours, django):
        plan.plan_status, plan.next_run_at, plan.approved_by_id = PlanStatus.APPROVED, later, world.approver.pk
        plan.objective = "not saved"
    names = ["plan_status", "next_run_at", "approved_by_id", "plan_status"]  # an attname, a name twice
    with CaptureQueriesContext(connection) as queries:
        update_row(ours, names)
    django.save(update_fields=["plan_status", "next_run_at", "approved_by_id"])
    assert len(queries) == 1
    columns = ("plan_status", "next_run_at", "approved_by_id", "objective")
    [ours_row], [django_row] = (RevenuePlan.objects.filter(pk=plan.pk).values_list(*columns) for plan in (ours, django))
    assert ours_row == django_row == (PlanStatus.APPROVED, later, world.approver.pk, "Secure renewal before day -30")
    gone = RevenuePlan(pk=uuid.uuid4())
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        update_row(gone, ["plan_status"])


def test_update_sql_and_values_write_what_a_querysets_update_writes(world):
    from orchestrator.execution.models import IntentStatus
    from plans.models import PlanStatus
    from revplan.rows import update_sql, update_values
    from tests.factories import make_plan

    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    intents = [ActionIntent.objects.create(
        tenant=world.tenant, account=world.account, plan=plan, step_id=uuid.uuid4(), attempt=1,
        action_type="PREP_RENEWAL_BRIEF", effect_key=f"k{index}", expires_at=timezone.now() + timedelta(days=1),
        status=IntentStatus.EXECUTING, approved_by=world.approver) for index in range(2)]
    fields = {"status": IntentStatus.SUCCEEDED, "external_ids": {"brief": [1, "a"]}, "lease_token": None}
    ActionIntent.objects.filter(pk=intents[1].pk, status=IntentStatus.EXECUTING).update(**fields)
    match = {"id": intents[0].pk, "status": IntentStatus.EXECUTING}
    with connection.cursor() as cursor:
        cursor.execute(update_sql(ActionIntent, tuple(fields), where=tuple(match)),
                       [*update_values(ActionIntent, fields), *update_values(ActionIntent, match)])
        assert cursor.rowcount == 1
        cursor.execute(update_sql(ActionIntent, tuple(fields), where=tuple(match)),  # no longer EXECUTING
                       [*update_values(ActionIntent, fields), *update_values(ActionIntent, match)])
        assert cursor.rowcount == 0
    ours, django = (ActionIntent.objects.values("status", "external_ids", "lease_token").get(pk=intent.pk)
                    for intent in intents)
    assert ours == django == {"status": "SUCCEEDED", "external_ids": {"brief": [1, "a"]}, "lease_token": None}
