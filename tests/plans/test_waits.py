"""The inbox's derived rows (plans.waits, plans.wait_models): whatever changes a plan, its step, its layers or its
account — the ORM, a bulk update, plain SQL — the triggers mark it and a refresh leaves exactly the rows a
rebuild from scratch gives; the engine's hot path marks nothing; a mark made during a refresh survives it."""
import threading
from datetime import date, timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from plans import waits
from plans.inbox import PERSON_LIFTED_LAYERS
from plans.ledger.chain import append
from plans.models import (
    EventType,
    PauseKind,
    PauseLayer,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    StepStatus,
)
from plans.wait_models import PlanWait, PlanWaitMark
from tests.factories import AccountFactory, UserFactory, make_plan

MEETING = "REQUEST_RENEWAL_MEETING"
_COMPARED = ("tenant_id", "plan_id", "source", "step_id", "plan_type", "risk_level", "created_by",
             "edited_by_since_approval", "owner_id", "account_owner_id", "renewal_date", "since", "first_person",
             "first_policy", "first_retry_limit", "first_approval_stale", "first_owner_inactive", "first_held",
             "first_not_by_resume")


def stored() -> set[tuple]:
    return {tuple(str(value) for value in row) for row in PlanWait.objects.values_list(*_COMPARED)}


def rebuilt() -> set[tuple]:
    """What the rows would be if built now from scratch, for every plan there is."""
    plan_ids = list(RevenuePlan.objects.values_list("id", flat=True))
    return {tuple(str(getattr(row, field)) for field in _COMPARED) for row in waits.rows_for(plan_ids)}


def assert_in_step() -> None:
    waits.refresh_all()
    assert stored() == rebuilt()
    assert not PlanWaitMark.objects.exists()


def entry(plan, event_type, *, step_id=None) -> None:
    with transaction.atomic():
        append(tenant_id=plan.tenant_id, plan_id=plan.id, event_type=event_type, actor="system:tests",
               explanation="For a test.", step_id=step_id)


def layer(plan, kind, *, minutes_ago=10):
    return PauseLayer.objects.create(plan=plan, kind=kind, scope="", reason_code=kind, explanation="For a test.",
                                     set_by="system:tests", set_at=timezone.now() - timedelta(minutes=minutes_ago))


def test_the_layer_columns_are_the_layers_a_person_lifts():
    assert set(waits.LAYER_COLUMNS) == set(PERSON_LIFTED_LAYERS)


@pytest.mark.django_db
def test_every_kind_of_change_is_seen_by_the_next_refresh(world):
    draft = make_plan(account=world.account)
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING,),
                       activated_at=timezone.now() - timedelta(hours=2))
    paused = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.PAUSED,
                       paused_at=timezone.now() - timedelta(hours=1))
    assert_in_step()
    assert {(row.source, row.plan_id) for row in PlanWait.objects.all()} == {("DRAFT", draft.id),
                                                                              ("PAUSED", paused.id)}

    # A DRAFT edited (its facts and its start), through a bulk update.
    RevenuePlan.objects.filter(pk=draft.pk).update(risk_level="HIGH", edited_by_since_approval=[world.approver.pk],
                                                   updated_at=timezone.now())
    assert_in_step()
    # A step set waiting (a bulk update), then the engine's entry saying since when.
    step = active.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.PENDING_APPROVAL)
    assert_in_step()
    assert PlanWait.objects.get(plan_id=active.id).since == active.activated_at
    entry(active, EventType.STEP_AWAITING_APPROVAL, step_id=step.step_id)
    assert_in_step()
    assert PlanWait.objects.get(plan_id=active.id).since > active.activated_at
    # Layers set and lifted.
    person = layer(paused, PauseKind.PERSON, minutes_ago=30)
    layer(paused, PauseKind.RETRY_LIMIT, minutes_ago=20)
    assert_in_step()
    PauseLayer.objects.filter(pk=person.pk).update(lifted_at=timezone.now(), lifted_by="user:tests")
    assert_in_step()
    assert PlanWait.objects.get(plan_id=paused.id).first_person is None
    # The account: a new owner and renewal date, in plain SQL.
    new_owner = UserFactory()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE plans_account SET owner_id = %s, renewal_date = %s WHERE id = %s",
                       [new_owner.pk, date(2027, 3, 1), world.account.id])
    assert_in_step()
    assert PlanWait.objects.get(plan_id=draft.id).account_owner_id == new_owner.pk
    # A plan transferred, approved, resumed: its waits move or end.
    RevenuePlan.objects.filter(pk=active.pk).update(owner_id=new_owner.pk)
    RevenuePlan.objects.filter(pk=draft.pk).update(plan_status=PlanStatus.APPROVED)
    RevenuePlan.objects.filter(pk=paused.pk).update(plan_status=PlanStatus.ACTIVE)
    assert_in_step()
    assert set(PlanWait.objects.values_list("plan_id", flat=True)) == {active.id}
    # The step approved: the last wait ends.
    PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.PENDING)
    assert_in_step()
    assert not PlanWait.objects.exists()


@pytest.mark.django_db
def test_the_engines_hot_path_marks_nothing(world):
    """A step's run and an ACTIVE plan's bookkeeping (no person waited on) fire no mark."""
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, activated_at=timezone.now())
    assert_in_step()
    for step in plan.steps.all():
        PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.DONE, attempts=1)
    RevenuePlan.objects.filter(pk=plan.pk).update(next_run_at=timezone.now(), version=5, updated_at=timezone.now())
    entry(plan, EventType.ACTION_EXECUTED)
    RevenuePlan.objects.filter(pk=plan.pk).update(plan_status=PlanStatus.COMPLETED)
    assert not PlanWaitMark.objects.exists()


@pytest.mark.django_db
def test_a_refresh_reads_nothing_more_when_nothing_changed(world):
    make_plan(account=world.account)
    waits.refresh([world.tenant.id])
    with CaptureQueriesContext(connection) as queries:
        assert waits.refresh([world.tenant.id]) == 0
    assert len(queries) == 1


def _draft(world):
    return make_plan(account=world.account)


def _waiting_step(world):
    return make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING,),
                     step_status=StepStatus.PENDING_APPROVAL, activated_at=timezone.now())


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("make", "change", "seen"), [
    (_draft, {"risk_level": "HIGH"}, ("risk_level", "HIGH")),
    # An ACTIVE plan's first rows, not yet committed when the change comes: its mark is what the trigger sees.
    (_waiting_step, {"owner_id": None}, ("owner_id", None)),
])
def test_a_change_committed_while_a_refresh_rebuilds_the_plan_is_seen_by_the_next(world, monkeypatch, make, change,
                                                                                  seen):
    """A writer in another transaction changes the plan while a refresh is between reading it and committing:
    the writer waits for the refresh's lock on the mark, then leaves a new one; the next refresh shows it."""
    plan = make(world)
    rows_for, writer = waits.rows_for, {}

    def change_the_plan():
        try:
            RevenuePlan.objects.filter(pk=plan.pk).update(**change)
        finally:
            connections.close_all()

    def rows_then_a_change_elsewhere(plan_ids):
        rows = rows_for(plan_ids)
        if not writer:
            writer["thread"] = threading.Thread(target=change_the_plan)
            writer["thread"].start()
            writer["thread"].join(timeout=1)  # it waits for this refresh's lock on the mark
            assert writer["thread"].is_alive()
        return rows

    monkeypatch.setattr(waits, "rows_for", rows_then_a_change_elsewhere)
    rebuilt_times = waits.refresh([world.tenant.id])
    writer["thread"].join(timeout=20)
    # The writer's mark, left after the refresh committed: this refresh took it again, or the next one does.
    rebuilt_times += waits.refresh([world.tenant.id])
    assert rebuilt_times == 2
    field, value = seen
    assert getattr(PlanWait.objects.get(plan_id=plan.id), field) == value
    assert stored() == rebuilt()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_two_refreshes_at_once_rebuild_each_plan_once(world):
    """Two inbox reads of the same tenant at once: one waits for the other (the tenant's advisory lock); neither
    fails on the one-row-per-wait constraint, and the rows are right."""
    for index in range(2 * waits.BATCH + 10):
        make_plan(account=world.account, updated_at=timezone.now() - timedelta(minutes=index))
    errors, counts = [], []

    def refresh():
        try:
            counts.append(waits.refresh([world.tenant.id]))
        except Exception as error:  # reported below, with the other thread's outcome
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)
    assert errors == []
    assert sum(counts) == 2 * waits.BATCH + 10
    assert PlanWait.objects.count() == 2 * waits.BATCH + 10
    assert stored() == rebuilt()


@pytest.mark.django_db
def test_a_plan_deleted_takes_its_rows(world):
    draft = make_plan(account=world.account)
    assert_in_step()
    PlanStep.objects.filter(plan=draft).delete()
    RevenuePlan.objects.filter(pk=draft.pk).delete()
    assert not PlanWait.objects.exists()
    assert not PlanWaitMark.objects.exists()
