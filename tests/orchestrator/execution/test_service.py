"""ExecutionService: one execution per intent, expiry, kill switches, cancel, compensate, stale workers."""
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from orchestrator.execution.connectors.internal import InternalConnector
from orchestrator.execution.models import (
    ActionIntent,
    AttemptOutcome,
    ExecutionAttempt,
    FailureClass,
    IntentStatus,
    InternalRecord,
)
from orchestrator.execution.service import ExecutionBlocked, ExecutionService, intent_create
from plans import services
from plans.errors import Conflict, ValidationFailed
from plans.models import AccountSignal, EventType, KillSwitch, PlanLedgerEntry
from tests.conftest import build_world
from tests.factories import make_plan


def ledger_events(intent) -> list[str]:
    entries = PlanLedgerEntry.objects.filter(data__intent_id=str(intent.id)).order_by("id")
    return list(entries.values_list("event_type", flat=True))


# --- the internal connector through the service -------------------------------------------------


def test_brief_is_built_from_the_account_and_its_signals(service, make_intent, world):
    # given
    world.account.signals.create(signal_type="SUPPORT_RISK", payload={"open_p1_tickets": 3}, observed_at=timezone.now())
    # when
    intent = service.execute(make_intent("PREP_RENEWAL_BRIEF").id)
    # then
    record = InternalRecord.objects.get(pk=intent.external_ids["record_id"])
    assert (record.kind, record.account_id, record.effect_key) == ("BRIEF", world.account.id, intent.effect_key)
    assert record.body["account"]["name"] == world.account.name
    assert record.body["owner"] == world.seller.username
    assert [s["signal_type"] for s in record.body["recent_signals"]] == ["SUPPORT_RISK"]
    assert ledger_events(intent) == [EventType.ACTION_EXECUTED]
    signal = AccountSignal.objects.get(account=world.account, signal_type="ACTION_EXECUTED")
    assert signal.payload["outcome"] == "EXECUTION_SUCCEEDED"
    assert signal.payload["intent_id"] == str(intent.id)


def test_executing_a_finished_intent_again_sends_nothing(service, make_intent, crm, crm_for, world):
    crm_for(world.tenant)
    intent = make_intent("ESCALATE_SUPPORT_RISK", approved_by=world.admin)
    first = service.execute(intent.id)
    second = service.execute(intent.id)
    assert first.status == second.status == IntentStatus.SUCCEEDED
    assert second.external_ids == first.external_ids
    assert len(crm.state.posts()) == 1
    assert ledger_events(intent) == [EventType.ACTION_EXECUTED]


def test_escalation_routed_to_internal_writes_a_task_for_the_support_lead(service, make_intent, world,
                                                                          route_to_internal, crm):
    route_to_internal(world.tenant)
    intent = service.execute(make_intent("ESCALATE_SUPPORT_RISK", approved_by=world.admin).id)
    assert intent.connector == "internal"
    record = InternalRecord.objects.get(pk=intent.external_ids["record_id"])
    assert record.kind == "TASK"
    assert "Support lead" in record.title
    assert crm.state.requests == []


def test_compensate_deletes_the_internal_draft(service, make_intent, world):
    intent = service.execute(make_intent("PREP_RENEWAL_BRIEF").id)
    undone = service.compensate(intent.id, actor=f"user:{world.approver.pk}")
    assert undone.compensated_at is not None
    assert not InternalRecord.objects.filter(effect_key=intent.effect_key).exists()
    assert ledger_events(intent) == [EventType.ACTION_EXECUTED, EventType.ACTION_COMPENSATED]
    with pytest.raises(Conflict):
        service.compensate(intent.id, actor="user:1")


# --- expiry and kill switches: nothing is sent ----------------------------------------------------


def test_an_expired_intent_sends_nothing(service, make_intent, crm, crm_for, world):
    crm_for(world.tenant)
    intent = make_intent("ESCALATE_SUPPORT_RISK", approved_by=world.admin, expires_in=timedelta(seconds=-1))
    result = service.execute(intent.id)
    assert (result.status, result.failure_class) == (IntentStatus.EXPIRED, FailureClass.EXPIRED)
    assert crm.state.requests == []
    assert ExecutionAttempt.objects.filter(intent=intent).count() == 0
    assert ledger_events(intent) == [EventType.ACTION_EXPIRED]


def engage_global(settings, world):
    settings.REVPLAN_EXECUTION_DISABLED = True


def engage_tenant(settings, world):
    KillSwitch.objects.create(tenant=world.tenant, action_type="", engaged=True)


def engage_action_type(settings, world):
    KillSwitch.objects.create(tenant=world.tenant, action_type="ESCALATE_SUPPORT_RISK", engaged=True)


@pytest.mark.parametrize(
    ("engage", "named"),
    [(engage_global, "REVPLAN_EXECUTION_DISABLED"), (engage_tenant, "tenant kill switch"),
     (engage_action_type, "kill switch for ESCALATE_SUPPORT_RISK")],
)
def test_each_kill_switch_blocks_before_anything_is_sent(service, make_intent, crm, crm_for, world, settings,
                                                         engage, named):
    # given
    crm_for(world.tenant)
    intent = make_intent("ESCALATE_SUPPORT_RISK", approved_by=world.admin)
    engage(settings, world)
    # when
    with pytest.raises(ExecutionBlocked) as blocked:
        service.execute(intent.id)
    # then
    assert blocked.value.code == "KILL_SWITCH"
    assert named in blocked.value.detail
    assert crm.state.requests == []
    intent.refresh_from_db()
    assert intent.status == IntentStatus.PENDING  # the approval still stands once the switch is released
    assert ledger_events(intent) == [EventType.ACTION_BLOCKED]


def test_an_action_type_switch_leaves_other_action_types_running(service, make_intent, world):
    KillSwitch.objects.create(tenant=world.tenant, action_type="ESCALATE_SUPPORT_RISK", engaged=True)
    assert service.execute(make_intent("PREP_RENEWAL_BRIEF").id).status == IntentStatus.SUCCEEDED


def test_a_switch_flipped_during_backoff_stops_the_retries(make_intent, crm, crm_for, world):
    # given: the first try fails, and an admin engages the tenant switch while the service waits
    crm_for(world.tenant)
    crm.state.scripted = [503]
    intent = make_intent("ESCALATE_SUPPORT_RISK", approved_by=world.admin)

    def admin_flips_switch(seconds):
        services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident")

    # when
    with pytest.raises(ExecutionBlocked):
        ExecutionService(sleep=admin_flips_switch).execute(intent.id)
    # then
    assert len(crm.state.posts()) == 1
    intent.refresh_from_db()
    assert intent.status == IntentStatus.PENDING
    assert ledger_events(intent) == [EventType.ACTION_RETRY_SCHEDULED, EventType.ACTION_BLOCKED]
    # and once released, the same intent runs to completion
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="resolved")
    assert ExecutionService().execute(intent.id).status == IntentStatus.SUCCEEDED
    assert len(crm.state.tasks) == 1


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_a_pending_intent_then_execute_sends_nothing(service, make_intent, crm, crm_for, world):
    crm_for(world.tenant)
    intent = make_intent("ESCALATE_SUPPORT_RISK", approved_by=world.admin)
    cancelled = service.cancel(intent.id, actor=f"user:{world.admin.pk}")
    assert (cancelled.status, cancelled.failure_class) == (IntentStatus.CANCELLED, FailureClass.CANCELLED)
    assert service.execute(intent.id).status == IntentStatus.CANCELLED
    assert crm.state.requests == []
    assert ledger_events(intent) == [EventType.ACTION_CANCELLED]
    with pytest.raises(Conflict):
        service.cancel(intent.id, actor="user:1")


# --- creating intents --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"action_type": "SEND_GIFT_BASKET"},
        {"approved_by": None},
        {"plan_id": "00000000-0000-0000-0000-000000000001"},
    ],
)
def test_bad_intents_are_refused(make_intent, fields):
    before = ActionIntent.objects.count()
    with pytest.raises(ValidationFailed):
        make_intent(**{"action_type": "PREP_RENEWAL_BRIEF", **fields})
    assert ActionIntent.objects.count() == before


def test_a_plan_step_attempt_has_one_intent_and_its_effect_key_ignores_the_attempt(world):
    plan = make_plan(account=world.account, status="ACTIVE")
    step = plan.steps.get(action_type="PREP_RENEWAL_BRIEF")
    common = {"tenant_id": world.tenant.id, "account_id": world.account.id, "action_type": "PREP_RENEWAL_BRIEF",
              "expires_at": plan.expires_at, "approving_policy": "tests", "plan_id": plan.id, "step_id": step.step_id}
    first = intent_create(attempt=1, **common)
    again = intent_create(attempt=1, **common)
    retry = intent_create(attempt=2, **common)
    assert again.id == first.id
    assert retry.id != first.id
    assert first.effect_key == retry.effect_key == f"plan:{plan.id}:step:{step.step_id}"


def test_plan_step_outcomes_join_the_plan_chain(service, world):
    plan = make_plan(account=world.account, status="ACTIVE")
    step = plan.steps.get(action_type="PREP_RENEWAL_BRIEF")
    intent = intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type="PREP_RENEWAL_BRIEF",
                           expires_at=plan.expires_at, approving_policy="tests", plan_id=plan.id,
                           step_id=step.step_id, attempt=1)
    service.execute(intent.id)
    entry = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.ACTION_EXECUTED)
    assert entry.step_id == step.step_id
    assert entry.data["attempt"] == 1


# --- races: two callers, and a worker that stalls past its lease ------------------------------


def run_in_threads(*targets, timeout=30):
    barrier = threading.Barrier(len(targets))
    results, errors = [None] * len(targets), []

    def wrap(index, target):
        try:
            barrier.wait()
            results[index] = target()
        except BaseException as error:  # the test asserts on it
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_the_same_intent_from_two_threads_is_sent_once(crm, crm_for):
    world = build_world()
    crm_for(world.tenant)
    crm.state.slow_seconds = 0.2  # keep the first caller inside the request while the second arrives
    intent = intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type="ESCALATE_SUPPORT_RISK",
                           expires_at=timezone.now() + timedelta(hours=1), approved_by=world.admin)
    _, errors = run_in_threads(lambda: ExecutionService().execute(intent.id),
                               lambda: ExecutionService().execute(intent.id))
    assert errors == []
    assert len(crm.state.posts()) == 1
    intent.refresh_from_db()
    assert intent.status == IntentStatus.SUCCEEDED
    assert ExecutionAttempt.objects.filter(intent=intent).count() == 1
    assert ledger_events(intent) == [EventType.ACTION_EXECUTED]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_a_worker_stalled_past_its_lease_cannot_overwrite_the_takeover(crm, crm_for, settings):
    # given: a lease shorter than the CRM's answer, so the first worker stalls past it
    settings.REVPLAN_EXECUTION_LEASE_SECONDS = 0.3
    world = build_world()
    crm_for(world.tenant, timeout_seconds=5)
    crm.state.slow_seconds = 1.0
    intent = intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type="ESCALATE_SUPPORT_RISK",
                           expires_at=timezone.now() + timedelta(hours=1), approved_by=world.admin)

    def stalled_worker():
        return ExecutionService().execute(intent.id)

    def takeover_worker():
        threading.Event().wait(0.5)  # after the first worker's lease ran out
        return ExecutionService().execute(intent.id)

    # when
    _, errors = run_in_threads(stalled_worker, takeover_worker)
    # then: both reached the CRM with the same key, the CRM kept one task, one outcome stands
    assert errors == []
    assert len(crm.state.posts()) == 2
    assert len(crm.state.tasks) == 1
    intent.refresh_from_db()
    assert intent.status == IntentStatus.SUCCEEDED
    assert intent.external_ids["task_id"] in crm.state.tasks
    assert ledger_events(intent) == [EventType.ACTION_EXECUTED]
    assert AccountSignal.objects.filter(account=world.account, signal_type="ACTION_EXECUTED").count() == 1
    # only the claim's holder records its try: the stalled worker's answer leaves no attempt row
    assert list(ExecutionAttempt.objects.filter(intent=intent).values_list("number", "outcome")) == [
        (2, AttemptOutcome.SUCCEEDED)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_an_internal_record_inserted_concurrently_is_found_not_doubled():
    # given: another worker's insert of the same effect is in flight (not committed yet)
    world = build_world()
    intent = intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type="PREP_RENEWAL_BRIEF",
                           expires_at=timezone.now() + timedelta(hours=1), approved_by=world.admin)
    intent = ActionIntent.objects.select_related("account__owner", "tenant").get(pk=intent.pk)
    in_flight = threading.Event()

    def other_worker():
        with transaction.atomic():
            record = InternalRecord.objects.create(tenant=world.tenant, account=world.account, kind="BRIEF",
                                                   effect_key=intent.effect_key, title="first", body={})
            in_flight.set()
            time.sleep(0.5)  # our INSERT waits on this row's unique key meanwhile
        return record

    def this_worker():
        assert in_flight.wait(10)
        return InternalConnector().execute(intent)

    # when
    (first, ref), errors = run_in_threads(other_worker, this_worker)
    # then: the record committed first is the effect; no second one
    assert errors == []
    assert ref.ids == {"record_id": str(first.pk), "kind": "BRIEF"}
    assert InternalRecord.objects.filter(effect_key=intent.effect_key).count() == 1
