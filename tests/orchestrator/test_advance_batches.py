"""Several plans per advance (orchestrator.claims.advance_batches, engine.advance_many): one transaction for
a tick's batch, each plan advanced as if alone, one plan's failure only its own."""
import logging
import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator import claims, engine
from orchestrator.execution.models import ActionIntent, IntentStatus
from plans import policy
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan
from tests.factories import AccountFactory, allow_autopilot
from tests.orchestrator.test_engine import BRIEF, approved_plan, decisions_fail_for


@pytest.mark.parametrize(("due", "batch", "spread", "sizes"), [
    (0, 10, 16, []),
    (5, 10, 16, [1] * 5),  # fewer than the spread: one plan per message, as many workers as there are plans
    (40, 10, 16, [3] * 8 + [2] * 8),
    (2000, 10, 16, [10] * 200),
    (45, 10, 4, [9] * 5),
    (7, 10, 1, [7]),
])
def test_the_ticks_due_plans_go_out_in_batches_that_still_spread(settings, due, batch, spread, sizes):
    settings.ORCHESTRATOR_ADVANCE_BATCH, settings.ORCHESTRATOR_ADVANCE_SPREAD = batch, spread
    plan_ids = [uuid.uuid4() for _ in range(due)]
    batches = claims.advance_batches(plan_ids)
    assert [len(batch) for batch in batches] == sizes
    assert [plan_id for batch in batches for plan_id in batch] == plan_ids  # each once, oldest first


def plans_of_accounts(world, count: int) -> list[RevenuePlan]:
    allow_autopilot(world.tenant, BRIEF)
    return [approved_plan(world, BRIEF, BRIEF, account=AccountFactory(tenant=world.tenant, owner=world.seller))
            for _ in range(count)]


def started(plan) -> list[str]:
    return list(PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq").values_list("event_type", flat=True))


def test_a_batch_advances_each_plan_as_alone(world):
    plans = plans_of_accounts(world, 3)
    finished = approved_plan(world, BRIEF, account=AccountFactory(tenant=world.tenant, owner=world.seller))
    RevenuePlan.objects.filter(pk=finished.pk).update(plan_status=PlanStatus.COMPLETED)
    unknown = uuid.uuid4()
    follow_ups = engine.advance_many([plan.id for plan in plans] + [finished.id, unknown], inline=True)
    # a follow-up per plan that was advanced: its first step created claimed by the caller; none for the others
    assert set(follow_ups) == {plan.id for plan in plans}
    for plan in plans:
        assert follow_ups[plan.id].inline.key.plan_id == plan.id
        assert follow_ups[plan.id].keys == []
        assert ActionIntent.objects.get(plan=plan).status == IntentStatus.EXECUTING
        assert RevenuePlan.objects.get(pk=plan.id).plan_status == PlanStatus.ACTIVE
        assert started(plan)[-2:] == [EventType.PLAN_ACTIVATED, EventType.STEP_ATTEMPT_STARTED]
    assert not ActionIntent.objects.filter(plan=finished).exists()


def test_a_batch_reads_its_plans_steps_and_attempts_once_whatever_its_size(world):
    def reads(plans) -> dict:
        with CaptureQueriesContext(connection) as queries:
            engine.advance_many([plan.id for plan in plans])
        sql = [query["sql"] for query in queries]
        return {"locks": sum(bool(re.search(r"FOR (NO KEY )?UPDATE", statement)) for statement in sql),
                "steps": sum(statement.startswith('SELECT "plans_planstep"') for statement in sql),
                "intents": sum(statement.startswith('SELECT "orchestrator_actionintent"') for statement in sql)}
    two, five = plans_of_accounts(world, 2), plans_of_accounts(world, 5)
    # Plans none of whose steps was tried have no attempts to read
    assert reads(two) == reads(five) == {"locks": 2, "steps": 1, "intents": 0}  # the accounts, then the plans
    # then, their first steps in flight: the attempts of every plan, in one read
    assert reads(two) == reads(five) == {"locks": 1, "steps": 1, "intents": 1}  # ACTIVE: no account lock
    assert all(ActionIntent.objects.filter(plan=plan).count() == 1 for plan in [*two, *five])


def test_a_batch_reads_its_plans_facts_and_settings_once_whatever_its_size(world):
    def reads(plans) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            engine.advance_many([plan.id for plan in plans], inline=True)
        return [query["sql"].split(" FROM ")[0][:60] for query in queries if query["sql"].startswith("SELECT")]
    two, five = plans_of_accounts(world, 2), plans_of_accounts(world, 5)
    # the activations' and first starts' reads: the plans' rows, the accounts' and plans' locks, the facts (kill
    # switches, owner, objective signals, the conflicting plan, autonomy settings, routes) in one read, the steps
    two_reads, five_reads = reads(two), reads(five)
    assert two_reads == five_reads
    assert len(two_reads) == 5
    assert all(ActionIntent.objects.get(plan=plan).status == IntentStatus.EXECUTING for plan in [*two, *five])


def test_a_batch_activation_still_sees_the_plan_it_conflicts_with(world):
    (active,) = plans_of_accounts(world, 1)
    engine.advance_many([active.id])
    waiting = approved_plan(world, BRIEF, account=AccountFactory(tenant=world.tenant, owner=world.seller))
    # approved before the one-plan-a-type rule came in: it waits APPROVED behind the ACTIVE one of its account
    RevenuePlan.objects.filter(pk=waiting.pk).update(account=active.account)
    (other,) = plans_of_accounts(world, 1)
    engine.advance_many([waiting.id, other.id])
    assert RevenuePlan.objects.get(pk=waiting.pk).plan_status == PlanStatus.APPROVED
    blocked = PlanLedgerEntry.objects.get(plan=waiting, event_type=EventType.ACTIVATION_BLOCKED)
    assert blocked.reason_code == policy.CONFLICT_ACTIVE_PLAN_EXISTS
    assert str(active.id) in blocked.explanation
    assert RevenuePlan.objects.get(pk=other.pk).plan_status == PlanStatus.ACTIVE


def test_an_activation_writes_the_plans_wake_up_with_its_move(world, settings):
    plans = plans_of_accounts(world, 3)
    with CaptureQueriesContext(connection) as queries:
        engine.advance_many([plan.id for plan in plans], inline=True)
    updates = [query["sql"] for query in queries if query["sql"].startswith('UPDATE "plans_revenueplan"')]
    assert len(updates) == len(plans)  # the move into ACTIVE only: no second UPDATE for next_run_at
    for plan in plans:
        plan.refresh_from_db()
        activated = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.PLAN_ACTIVATED).occurred_at
        # the tick looks again once the first step's message could be lost, not at once
        assert abs((plan.next_run_at - activated).total_seconds() - settings.ORCHESTRATOR_REDELIVERY_SECONDS) < 5


def test_one_plans_failure_in_a_batch_is_only_its_own(world, monkeypatch, caplog):
    plans = plans_of_accounts(world, 3)
    broken_plan = plans[1]
    decisions_fail_for(monkeypatch, lambda plan, step: plan.pk == broken_plan.pk)
    with caplog.at_level(logging.ERROR, logger="orchestrator.engine"):
        follow_ups = engine.advance_many([plan.id for plan in plans])
    # the batch's transaction rolled back; then each plan in its own: the others advanced, the broken one left
    # as it was (the tick's claim guard brings it back), and both failures logged with what failed
    assert set(follow_ups) == {plans[0].id, plans[2].id}
    for plan in (plans[0], plans[2]):
        assert [key.plan_id for key in follow_ups[plan.id].keys] == [plan.id]
        assert ActionIntent.objects.filter(plan=plan).count() == 1
    assert RevenuePlan.objects.get(pk=broken_plan.id).plan_status == PlanStatus.APPROVED
    assert not ActionIntent.objects.filter(plan=broken_plan).exists()
    assert EventType.PLAN_ACTIVATED not in started(broken_plan)
    messages = [(record.getMessage(), getattr(record, "plan_id", None)) for record in caplog.records]
    assert ("batched advance failed; advancing its plans one by one", None) in messages
    assert ("advance failed", str(broken_plan.id)) in messages


def test_a_single_plans_failure_is_raised_as_before(world, monkeypatch):
    (plan,) = plans_of_accounts(world, 1)
    monkeypatch.setattr(engine, "decide_step", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        engine.advance(plan.id)


def test_two_plans_of_one_account_in_one_batch_activate_one_at_a_time(world):
    # the batch's conflict read is made before either activates: the second must still find the first ACTIVE
    first = approved_plan(world, BRIEF, account=AccountFactory(tenant=world.tenant, owner=world.seller))
    second = approved_plan(world, BRIEF, account=AccountFactory(tenant=world.tenant, owner=world.seller))
    RevenuePlan.objects.filter(pk=second.pk).update(account=first.account)
    engine.advance_many([first.id, second.id])
    statuses = sorted(RevenuePlan.objects.filter(pk__in=[first.id, second.id]).values_list("plan_status", flat=True))
    assert statuses == sorted([PlanStatus.ACTIVE, PlanStatus.APPROVED])
    waiting = RevenuePlan.objects.get(pk__in=[first.id, second.id], plan_status=PlanStatus.APPROVED)
    assert not ActionIntent.objects.filter(plan=waiting).exists()
    assert EventType.PLAN_ACTIVATED not in started(waiting)
    blocked = PlanLedgerEntry.objects.get(plan=waiting, event_type=EventType.ACTIVATION_BLOCKED)
    assert blocked.reason_code == policy.CONFLICT_ACTIVE_PLAN_EXISTS  # the wait explained, not silent
    active = ({first.id, second.id} - {waiting.id}).pop()
    assert str(active) in blocked.explanation
