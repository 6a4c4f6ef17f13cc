"""services.signal_record: typed, bounded, idempotent per (tenant, source, external_id), ledgered when it
comes from outside, and waking the plans whose objective it may meet."""
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from orchestrator import engine
from plans import ledger, services
from plans.errors import Conflict, NotAllowed, NotFound, ValidationFailed
from plans.models import (
    AccountSignal,
    EventType,
    IntegrationToken,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    StepStatus,
)
from plans.schemas import PlanDraftInput, StepInput
from plans.services.signals import MAX_PAYLOAD_BYTES
from plans.signals import OUTSIDE_SIGNAL_TYPES, SYSTEM_SIGNAL_TYPES, TAXONOMY
from tests.conftest import build_world
from tests.factories import AccountFactory, make_plan

MEETING, BRIEF = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF"


def record(world, **overrides):
    fields = {"account_id": world.account.id, "signal_type": "RENEWAL_COMMITTED", "source": "crm",
              "external_id": "opp-1", "actor": world.seller} | overrides
    return services.signal_record(**fields)


def signal_entries(tenant) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(tenant=tenant, plan__isnull=True, event_type=EventType.SIGNAL_RECORDED))


def token_for(world) -> IntegrationToken:
    return IntegrationToken.objects.create(tenant=world.tenant, name=f"crm-{uuid.uuid4()}", key_prefix="rvp_x",
                                           key_hash=uuid.uuid4().hex * 2, created_by=world.admin,
                                           created_at=timezone.now())


# --- the taxonomy -------------------------------------------------------------------------------


def test_the_taxonomy_names_every_type_the_code_writes_and_says_who_may_write_it():
    from_outside = {"RENEWAL_COMMITTED", "RENEWAL_CLOSED_WON", "RENEWAL_AT_RISK", "SUPPORT_RISK", "SUPPORT_ESCALATION",
                    "CHAMPION_LEFT", "NO_RESPONSE", "NEGATIVE_RESPONSE"}
    only_the_system = {"ACTION_EXECUTED", "ACTION_FAILED", "EXECUTION_SUCCEEDED", "EXECUTION_FAILED", "IDEA_REJECTED",
                       "IDEA_EDITED"}
    assert (from_outside, only_the_system) == (OUTSIDE_SIGNAL_TYPES, SYSTEM_SIGNAL_TYPES)
    assert all(signal.meaning.endswith(".") for signal in TAXONOMY.values())


# --- recording, idempotency ---------------------------------------------------------------------


def test_a_signal_from_a_person_is_recorded_once_however_often_it_is_sent(world):
    # when
    first = record(world, payload={"deal": "renewal-2027"})
    again = record(world, payload={"deal": "changed meanwhile"})

    # then: one row, the first one, and one ledger entry naming the person
    assert (first.created, again.created) == (True, False)
    assert again.signal.pk == first.signal.pk
    signal = AccountSignal.objects.get()
    assert (signal.tenant_id, signal.source, signal.external_id, signal.recorded_by, signal.payload) == (
        world.tenant.id, "crm", "opp-1", f"user:{world.seller.pk}", {"deal": "renewal-2027"})
    (entry,) = signal_entries(world.tenant)
    assert (entry.actor, entry.reason_code) == (f"user:{world.seller.pk}", "RENEWAL_COMMITTED")
    assert entry.data["signal_id"] == signal.pk
    assert (entry.data["source"], entry.data["external_id"]) == ("crm", "opp-1")
    assert "renewal-2027" not in str(entry.data)  # the payload stays on the row
    assert ledger.verify_ledger(tenant_id=world.tenant.id).ok


def test_the_same_external_id_in_another_tenant_or_from_another_source_is_another_signal(world, other_world):
    record(world)
    record(world, source="zendesk")
    record(other_world, actor=other_world.seller)
    assert AccountSignal.objects.count() == 3


def test_without_an_external_id_every_record_is_a_new_signal(world):
    record(world, external_id="")
    record(world, external_id="")
    assert AccountSignal.objects.count() == 2


def test_an_external_id_sent_again_for_another_account_or_type_is_a_conflict(world):
    record(world)
    elsewhere = AccountFactory(tenant=world.tenant, owner=world.seller)
    for overrides in ({"account_id": elsewhere.id}, {"signal_type": "RENEWAL_AT_RISK"}):
        with pytest.raises(Conflict) as refused:
            record(world, **overrides)
        assert refused.value.code == "EXTERNAL_ID_REUSED"
    assert AccountSignal.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_connections_sending_the_same_signal_at_once_store_it_once():
    # given: one connection has inserted the signal and not committed yet
    world = build_world()
    inserted, release, results = threading.Event(), threading.Event(), {}

    def first():
        try:
            with transaction.atomic():
                results["first"] = record(world)
                inserted.set()
                release.wait(10)
        finally:
            connection.close()

    def second():
        try:
            results["second"] = record(world)
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert inserted.wait(10)
    # when: the second sends the same one; it waits on the unique key rather than inserting a twin
    two = threading.Thread(target=second)
    two.start()
    time.sleep(0.5)
    assert two.is_alive()
    release.set()
    one.join(10)
    two.join(10)

    # then
    assert (results["first"].created, results["second"].created) == (True, False)
    assert results["second"].signal.pk == results["first"].signal.pk
    assert AccountSignal.objects.count() == 1
    assert len(signal_entries(world.tenant)) == 1


# --- what is refused ----------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "code"), [
    ({"signal_type": "RENEWAL_MAYBE"}, "UNKNOWN_SIGNAL_TYPE"),
    ({"signal_type": "ACTION_EXECUTED"}, "SIGNAL_TYPE_RESERVED"),
    ({"signal_type": "IDEA_REJECTED"}, "SIGNAL_TYPE_RESERVED"),
    ({"source": "system"}, "INVALID_SOURCE"),
    ({"source": ""}, "INVALID_SOURCE"),
    ({"source": "c r m"}, "INVALID_SOURCE"),
    ({"external_id": "x" * 201}, "INVALID_EXTERNAL_ID"),
    ({"payload": {"blob": "x" * MAX_PAYLOAD_BYTES}}, "PAYLOAD_TOO_LARGE"),
    ({"payload": {"1": {"2": {"3": {"4": {"5": {}}}}}}}, "PAYLOAD_TOO_DEEP"),
    ({"payload": {"1": [[[[[]]]]]}}, "PAYLOAD_TOO_DEEP"),
    ({"payload": ["not", "an", "object"]}, "PAYLOAD_NOT_OBJECT"),
    ({"observed_at": timezone.now() + timedelta(hours=1)}, "OBSERVED_IN_FUTURE"),
])
def test_a_signal_from_outside_is_refused_when_its_type_source_or_payload_is_wrong(world, overrides, code):
    with pytest.raises(ValidationFailed) as refused:
        record(world, **overrides)
    assert refused.value.code == code
    assert not AccountSignal.objects.exists()
    assert not signal_entries(world.tenant)


def test_a_payload_at_the_bounds_is_taken(world):
    deep = {"1": {"2": {"3": {"4": {"5": "leaf"}}}}}  # five levels
    fitting = {"blob": "x" * (MAX_PAYLOAD_BYTES - len('{"blob":""}'))}
    assert record(world, payload=deep).created
    assert record(world, external_id="opp-2", payload=fitting).created


def test_the_system_writes_its_own_types_unledgered_here(world):
    # the spine ledgers its outcome itself (ACTION_EXECUTED in the plan's chain)
    recorded = services.signal_record(account_id=world.account.id, signal_type="ACTION_EXECUTED",
                                      actor=services.SystemActor("execution"))
    assert (recorded.created, recorded.signal.source, recorded.signal.recorded_by) == (
        True, "system", "system:execution")
    assert not signal_entries(world.tenant)


# --- who may ------------------------------------------------------------------------------------


def test_a_viewer_may_not_record_a_signal_and_another_tenant_does_not_see_the_account(world, other_world):
    with pytest.raises(NotAllowed):
        record(world, actor=world.viewer)
    with pytest.raises(NotFound):
        record(world, actor=other_world.admin)
    assert not AccountSignal.objects.exists()


@pytest.mark.parametrize("role", ["seller", "approver", "admin"])
def test_a_seller_and_up_may_record_a_signal(world, role):
    assert record(world, actor=getattr(world, role)).created


def test_an_integration_token_records_in_its_own_tenant_only_and_is_named_in_the_ledger(world, other_world):
    token = token_for(world)
    recorded = record(world, actor=token)
    assert recorded.signal.recorded_by == f"integration:{token.pk}"
    assert signal_entries(world.tenant)[0].actor == f"integration:{token.pk}"
    with pytest.raises(NotFound):
        record(other_world, actor=token)
    with pytest.raises(ValidationFailed):
        record(world, actor=token, external_id="opp-9", signal_type="ACTION_FAILED")


# --- waking plans -------------------------------------------------------------------------------


def test_an_objective_signal_wakes_the_active_plans_it_may_complete_and_no_other(world):
    # given
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    paused = make_plan(account=world.account, status=PlanStatus.PAUSED)
    other_type = make_plan(account=world.account, status=PlanStatus.ACTIVE, plan_type="OTHER_TYPE")
    elsewhere = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE)
    before = timezone.now()

    # when
    signal, created = services.signal_record(account_id=world.account.id, signal_type="RENEWAL_COMMITTED",
                                             payload={"source": "crm"})
    assert created

    # then
    assert (signal.account_id, signal.signal_type, signal.payload) == (world.account.id, "RENEWAL_COMMITTED",
                                                                        {"source": "crm"})
    assert signal.observed_at >= before
    next_run_at = dict(RevenuePlan.objects.values_list("id", "next_run_at"))
    assert next_run_at[active.id] >= before  # the tick looks at it now
    assert [next_run_at[plan.id] for plan in (paused, other_type, elsewhere)] == [None, None, None]


def test_a_signal_no_objective_waits_for_wakes_nothing(world):
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    observed_at = timezone.now() - timedelta(hours=1)

    signal, _ = services.signal_record(account_id=world.account.id, signal_type="ACTION_EXECUTED",
                                       observed_at=observed_at)

    assert AccountSignal.objects.get().pk == signal.pk
    assert (signal.observed_at, signal.payload) == (observed_at, {})
    active.refresh_from_db()
    assert active.next_run_at is None


def test_a_plan_waiting_for_a_person_is_woken_and_completes_on_its_objective(world):
    # given: an ACTIVE plan whose meeting waits for a person: nothing is due
    steps = [StepInput(step_id=uuid.uuid4(), action_type=MEETING)]
    steps.append(StepInput(step_id=uuid.uuid4(), action_type=BRIEF, depends_on=[steps[0].step_id]))
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=PlanDraftInput(steps=steps), actor=world.seller)
    services.plan_approve(plan_id=plan.id, user=world.admin)
    engine.advance_plan(plan.id)
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ACTIVE
    assert PlanStep.objects.get(plan=plan, action_type=MEETING).status == StepStatus.PENDING_APPROVAL
    assert plan.next_run_at is None

    # when
    assert record(world).created

    # then: due now, and the next advance completes it on its objective
    plan.refresh_from_db()
    assert plan.next_run_at is not None
    assert plan.next_run_at <= timezone.now()
    assert signal_entries(world.tenant)[0].data["woken_plan_ids"] == [str(plan.id)]
    engine.advance_plan(plan.id)
    plan.refresh_from_db()
    assert (plan.plan_status, plan.completion_reason) == (PlanStatus.COMPLETED, "objective_met")
    assert PlanStep.objects.get(plan=plan, action_type=MEETING).status == StepStatus.SKIPPED


def test_a_signal_recorded_again_wakes_nothing(world):
    record(world)
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    assert not record(world).created
    active.refresh_from_db()
    assert active.next_run_at is None
