"""orchestrator/execution/intents.py: a step attempt's intent and the step's count of attempts written in one
statement, under the plan's lock."""
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator.execution.intents import intent_create, step_intent_fields
from orchestrator.execution.models import ActionIntent
from plans.errors import ValidationFailed
from plans.locking import lock_plan
from plans.models import PlanStatus, PlanStep
from tests.factories import make_plan


def test_a_step_attempt_and_its_count_are_one_statement(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    step = plan.steps.order_by("sequence").first()
    PlanStep.objects.filter(pk=step.pk).update(next_attempt_at=timezone.now())
    with transaction.atomic():
        lock_plan(plan.id)
        with CaptureQueriesContext(connection) as queries:
            intent = intent_create(**step_intent_fields(plan, step), approved_by_id=world.approver.pk, attempt=1,
                                   plan_locked=True)
    assert len(queries) == 1
    row = ActionIntent.objects.get(pk=intent.pk)
    assert (row.plan_id, row.step_id, row.attempt, row.effect_key) == (
        plan.id, step.step_id, 1, f"plan:{plan.id}:step:{step.step_id}")
    assert row.created_at is not None
    assert not intent._state.adding
    step.refresh_from_db()
    assert (step.attempts, step.next_attempt_at) == (1, None)


def test_a_step_the_plan_does_not_have_gets_no_attempt(world, other_world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    others_step = make_plan(account=other_world.account, status=PlanStatus.ACTIVE).steps.first()
    fields = {**step_intent_fields(plan, plan.steps.first()), "step_id": others_step.step_id}
    with transaction.atomic():
        lock_plan(plan.id)
        with pytest.raises(ValidationFailed):
            intent_create(**fields, approved_by_id=world.approver.pk, attempt=1, plan_locked=True)
    assert not ActionIntent.objects.filter(plan_id=plan.id).exists()
    others_step.refresh_from_db()
    assert others_step.attempts == 0
