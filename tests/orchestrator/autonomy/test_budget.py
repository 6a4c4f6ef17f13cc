"""Autonomy budget units: all or none, and taken last in the transactions that start autonomous steps."""
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import engine, step_runner
from orchestrator.autonomy import budget
from orchestrator.autonomy.models import AutonomyUsage
from orchestrator.execution.models import ActionIntent
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan, StepStatus
from tests.factories import AccountFactory, allow_autopilot, make_plan
from tests.orchestrator.test_engine import BRIEF, approved_plan

pytestmark = pytest.mark.django_db

TYPE_ROW = {"account__isnull": True, "action_type": BRIEF}


def unit(world, *, account, account_limit=10, action_type_limit=10) -> budget.Unit:
    return budget.Unit(tenant_id=world.tenant.id, account_id=account.id, action_type=BRIEF,
                       day=timezone.now().date(), account_limit=account_limit, action_type_limit=action_type_limit)


def used() -> dict:
    return {(row.account_id, row.action_type): row.used for row in AutonomyUsage.objects.all()}


def test_units_of_several_accounts_are_counted_in_one_statement(world):
    other = AccountFactory(tenant=world.tenant, owner=world.seller)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert budget.take([unit(world, account=world.account), unit(world, account=world.account),
                            unit(world, account=other)])
    assert len(queries) == 1
    assert used() == {(world.account.id, ""): 2, (other.id, ""): 1, (None, BRIEF): 3}


def test_a_budget_short_of_one_unit_takes_none_of_them(world):
    other = AccountFactory(tenant=world.tenant, owner=world.seller)
    with transaction.atomic():
        assert budget.take([unit(world, account=world.account)])
    with transaction.atomic():
        # The type's budget has 2 left of 3, three are wanted: the accounts' units counted are given back.
        assert not budget.take([unit(world, account=world.account, action_type_limit=3),
                                unit(world, account=other, action_type_limit=3),
                                unit(world, account=other, action_type_limit=3)])
    assert used() == {(world.account.id, ""): 1, (other.id, ""): 0, (None, BRIEF): 1}
    with transaction.atomic():  # more than a limit in one go: refused without a statement
        assert not budget.take([unit(world, account=other, account_limit=1)] * 2)
    assert used()[other.id, ""] == 0


def test_a_batch_takes_its_units_last_and_as_one_statement(world):
    allow_autopilot(world.tenant, BRIEF)
    plans = [make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE,
                       action_types=(BRIEF,), approved_by=world.approver) for _ in range(3)]
    with CaptureQueriesContext(connection) as queries:
        follow_ups = engine.advance_many([plan.id for plan in plans])
    assert sum(len(follow_up.keys) for follow_up in follow_ups.values()) == 3
    statements = [query["sql"] for query in queries if not query["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    takes = [index for index, sql in enumerate(statements) if "orchestrator_autonomyusage" in sql]
    # The hot row (the action type's) is locked by the batch's last statement, for the commit only.
    assert takes == [len(statements) - 1]
    assert AutonomyUsage.objects.get(**TYPE_ROW).used == 3


def test_a_batch_whose_budget_runs_short_starts_exactly_what_is_left(world):
    allow_autopilot(world.tenant, BRIEF, max_per_day=2)
    plans = [make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE,
                       action_types=(BRIEF,), approved_by=world.approver) for _ in range(5)]

    engine.advance_many([plan.id for plan in plans])

    # The batch wrote nothing; each plan was then advanced alone, its unit taken as its step started.
    assert ActionIntent.objects.filter(plan__in=plans).count() == 2
    assert sorted(plan.steps.get().status for plan in plans) == [StepStatus.PENDING] * 2 + [
        StepStatus.PENDING_APPROVAL] * 3
    waiting = PlanLedgerEntry.objects.filter(plan__in=plans, event_type=EventType.STEP_AWAITING_APPROVAL)
    assert sorted(entry.reason_code for entry in waiting) == ["BUDGET_EXHAUSTED"] * 3
    assert PlanLedgerEntry.objects.filter(plan__in=plans, event_type=EventType.STEP_ATTEMPT_STARTED).count() == 2
    assert AutonomyUsage.objects.get(**TYPE_ROW).used == 2


def test_a_next_step_short_of_budget_keeps_the_outcome_and_is_decided_again(world):
    allow_autopilot(world.tenant, BRIEF, max_per_day=1)
    plan = approved_plan(world, BRIEF, BRIEF)  # the second depends on the first
    [key] = engine.advance_plan(plan.id)

    follow_up = step_runner.execute_step(key)

    # The first step's outcome is recorded; the next one's start was rolled back with its missing unit.
    assert (follow_up.keys, follow_up.inline, follow_up.advance) == ([], None, True)
    first, second = plan.steps.order_by("sequence")
    assert (first.status, second.status, second.attempts) == (StepStatus.AUTO_EXECUTED, StepStatus.PENDING, 0)
    assert RevenuePlan.objects.get(pk=plan.id).next_run_at is not None  # the tick's safety net
    assert engine.advance_plan(plan.id) == []  # the advance message: decided with the budget read
    second.refresh_from_db()
    assert second.status == StepStatus.PENDING_APPROVAL
    assert PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.STEP_AWAITING_APPROVAL).reason_code == (
        "BUDGET_EXHAUSTED")
    assert AutonomyUsage.objects.get(**TYPE_ROW).used == 1
