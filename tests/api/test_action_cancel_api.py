"""POST /api/v1/actions/{id}/cancel/: a PENDING step attempt ends CANCELLED, its plan is held by a PERSON layer,
the step is not retried on its own and a resume makes a new attempt; every role, another tenant, the wrong
state; and a worker racing the cancel never sends anything once the cancel was accepted."""
import threading
import time

import pytest
from django.db import connection, transaction

from orchestrator import engine, step_runner
from orchestrator.execution.cancel import intent_cancel
from orchestrator.execution.models import ActionIntent, ExecutionAttempt, IntentStatus, InternalRecord
from orchestrator.execution.service import ExecutionService
from plans.models import (
    EventType,
    PauseKind,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    StepStatus,
)
from tests.api.helpers import assert_error, client_for
from tests.conftest import build_world
from tests.factories import MembershipFactory, UserFactory, allow_autopilot, make_plan

BRIEF = "PREP_RENEWAL_BRIEF"


def start_attempt(world) -> ActionIntent:
    """An ACTIVE plan whose step attempt the engine made and no worker took yet: a PENDING intent."""
    allow_autopilot(world.tenant, BRIEF)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    [key] = engine.advance_plan(plan.id)
    intent = ActionIntent.objects.get(plan_id=plan.id, step_id=key.step_id, attempt=key.attempt)
    assert intent.status == IntentStatus.PENDING
    return intent


def cancel_url(intent) -> str:
    return f"/api/v1/actions/{intent.id}/cancel/"


def entries(plan_id, event_type=None) -> list[PlanLedgerEntry]:
    found = PlanLedgerEntry.objects.filter(plan_id=plan_id).order_by("chain_seq")
    return list(found.filter(event_type=event_type) if event_type else found)


def state_of(intent) -> tuple:
    return (ActionIntent.objects.filter(pk=intent.pk).values().get(),
            RevenuePlan.objects.filter(pk=intent.plan_id).values().get(),
            list(PlanStep.objects.filter(plan_id=intent.plan_id).values()),
            PlanLedgerEntry.objects.count())


@pytest.mark.parametrize("who", ["seller", "approver", "admin"])
def test_owner_approver_and_admin_cancel_and_the_plan_waits_for_a_person(world, who):
    intent = start_attempt(world)
    user = getattr(world, who)  # the seller owns the account and its plans
    response = client_for(user).post(cancel_url(intent), {"reason": "wrong contact"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["failure_class"]) == ("CANCELLED", "CANCELLED")
    assert body["outcome"] == f"Cancelled before it ran (cancelled by {user.username}: wrong contact)."
    plan = RevenuePlan.objects.get(pk=intent.plan_id)
    assert plan.plan_status == PlanStatus.PAUSED
    [layer] = PauseLayer.objects.filter(plan=plan, lifted_at__isnull=True)
    assert (layer.kind, layer.reason_code, layer.set_by) == (PauseKind.PERSON, "ATTEMPT_CANCELLED", f"user:{user.pk}")
    assert "wrong contact" in layer.explanation
    assert "a resume makes a new attempt" in layer.explanation
    [cancelled] = entries(plan.id, EventType.ACTION_CANCELLED)
    assert (cancelled.actor, cancelled.data["reason"], cancelled.data["intent_id"]) == (
        f"user:{user.pk}", "wrong contact", str(intent.id))
    assert [entry.event_type for entry in entries(plan.id)][-3:] == [
        EventType.ACTION_CANCELLED, EventType.PLAN_PAUSED, EventType.PAUSE_LAYER_ADDED]
    step = PlanStep.objects.get(plan=plan)
    assert (step.status, step.attempts, step.attempts_in_series, step.next_attempt_at) == (
        StepStatus.PENDING, 1, 0, None)


def test_the_cancelled_step_is_not_retried_on_its_own_and_a_resume_makes_a_new_attempt(world):
    intent = start_attempt(world)
    api = client_for(world.seller)
    assert api.post(cancel_url(intent), {}, format="json").status_code == 200
    # when: the attempt's message arrives late, and the orchestrator looks at the plan again
    key = engine.StepKey(intent.plan_id, intent.step_id, intent.attempt)
    step_runner.execute_step(key)
    assert engine.advance_plan(intent.plan_id) == []
    # then: nothing was sent, nothing new was tried
    intent.refresh_from_db()
    assert intent.status == IntentStatus.CANCELLED
    assert not InternalRecord.objects.filter(account=world.account).exists()
    assert not ExecutionAttempt.objects.filter(intent=intent).exists()
    assert ActionIntent.objects.filter(plan_id=intent.plan_id).count() == 1
    # and "why?" says who cancelled what, and what runs it again
    why = api.get(f"/api/v1/plans/{intent.plan_id}/why/").json()
    [held] = why["held"]
    assert held["code"] == "PERSON"
    assert f"{world.seller.username} cancelled attempt 1 of step 1 ({BRIEF}) before it ran" in held["sentence"]
    assert "a resume makes a new attempt" in held["sentence"]
    # when: a person resumes
    assert api.post(f"/api/v1/plans/{intent.plan_id}/resume/", {}, format="json").status_code == 200
    [new_key] = engine.advance_plan(intent.plan_id)
    step_runner.execute_step(new_key)
    # then: a new attempt ran (through the gate), and the step is done
    assert new_key.attempt == 2
    step = PlanStep.objects.get(plan_id=intent.plan_id)
    assert (step.status, step.attempts) == (StepStatus.AUTO_EXECUTED, 2)
    assert InternalRecord.objects.filter(account=world.account).count() == 1


@pytest.mark.parametrize("who", ["viewer", "other_seller"])
def test_a_viewer_or_a_seller_who_does_not_own_the_plan_gets_403_and_nothing_changes(world, who):
    intent = start_attempt(world)
    if who == "other_seller":
        user = UserFactory()
        MembershipFactory(user=user, tenant=world.tenant, role="SELLER")
    else:
        user = world.viewer
    before = state_of(intent)
    assert_error(client_for(user).post(cancel_url(intent), {}, format="json"), 403, "NOT_ALLOWED")
    assert state_of(intent) == before


def test_another_tenants_action_is_404(world, other_world):
    theirs = start_attempt(other_world)
    before = state_of(theirs)
    assert_error(client_for(world.admin).post(cancel_url(theirs), {}, format="json"), 404, "NOT_FOUND")
    assert state_of(theirs) == before


def test_a_finished_or_cancelled_action_is_409_and_nothing_changes(world):
    intent = start_attempt(world)
    step_runner.execute_step(engine.StepKey(intent.plan_id, intent.step_id, intent.attempt))
    before = state_of(intent)
    body = assert_error(client_for(world.admin).post(cancel_url(intent), {}, format="json"), 409,
                        "INTENT_NOT_CANCELLABLE")
    assert "SUCCEEDED" in body["detail"]
    assert state_of(intent) == before


def test_an_unknown_field_is_400(world):
    intent = start_attempt(world)
    assert_error(client_for(world.admin).post(cancel_url(intent), {"status": "CANCELLED"}, format="json"), 400,
                 "VALIDATION_ERROR")


# --- a worker claiming the intent at the same moment -------------------------------------------------


def _outcome_consistent(intent_id, cancel_outcome) -> str:
    intent = ActionIntent.objects.get(pk=intent_id)
    records = InternalRecord.objects.filter(effect_key=intent.effect_key).count()
    tries = ExecutionAttempt.objects.filter(intent=intent).count()
    executed = PlanLedgerEntry.objects.filter(data__intent_id=str(intent_id), event_type=EventType.ACTION_EXECUTED)
    if cancel_outcome == "cancelled":
        # accepted: no effect, no try, no execution entry — ever
        assert (intent.status, records, tries, executed.exists()) == (IntentStatus.CANCELLED, 0, 0, False)
        return "cancel"
    assert cancel_outcome == "INTENT_NOT_CANCELLABLE", cancel_outcome
    assert (intent.status, records) == (IntentStatus.SUCCEEDED, 1)
    return "worker"


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_a_worker_either_wins_whole_or_loses_whole():
    world = build_world()
    won = {"cancel": 0, "worker": 0}
    for _ in range(12):
        intent = start_attempt(world)
        outcomes: dict = {}
        barrier = threading.Barrier(2)

        def cancel(intent_id=intent.id, outcomes=outcomes, barrier=barrier):
            try:
                connection.ensure_connection()
                barrier.wait(timeout=10)
                intent_cancel(intent_id=intent_id, user=world.seller)
                outcomes["cancel"] = "cancelled"
            except Exception as error:  # the assertion below names it
                outcomes["cancel"] = getattr(error, "code", repr(error))
            finally:
                connection.close()

        def work(intent_id=intent.id, barrier=barrier):
            try:
                connection.ensure_connection()
                barrier.wait(timeout=10)
                ExecutionService().execute(intent_id)
            finally:
                connection.close()

        threads = [threading.Thread(target=cancel, daemon=True), threading.Thread(target=work, daemon=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        won[_outcome_consistent(intent.id, outcomes["cancel"])] += 1
        RevenuePlan.objects.filter(pk=intent.plan_id).update(plan_status=PlanStatus.ABORTED)  # one ACTIVE per type
    assert sum(won.values()) == 12


@pytest.mark.timeout(60)
@pytest.mark.django_db(transaction=True)
def test_a_worker_that_claims_while_the_cancel_commits_finds_it_cancelled_and_sends_nothing():
    world = build_world()
    intent = start_attempt(world)
    claimed = {}

    def work():
        try:
            claimed["intent"] = ExecutionService().execute(intent.id)
        finally:
            connection.close()

    with transaction.atomic():
        intent_cancel(intent_id=intent.id, user=world.approver)  # not committed yet: the row stays locked
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        time.sleep(0.5)  # the worker's claim now waits on the row
        assert worker.is_alive()
    worker.join(timeout=20)
    assert claimed["intent"].status == IntentStatus.CANCELLED
    _outcome_consistent(intent.id, "cancelled")


def test_an_action_held_by_a_kill_switch_is_cancelled_and_the_release_does_not_run_it(world):
    from plans import services

    intent = start_attempt(world)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident",
                             action_type=BRIEF)
    key = engine.StepKey(intent.plan_id, intent.step_id, intent.attempt)
    step_runner.execute_step(key)  # the switch holds it back: still PENDING, the plan held by the switch's layer
    intent.refresh_from_db()
    assert intent.status == IntentStatus.PENDING
    api = client_for(world.approver)
    assert api.post(cancel_url(intent), {"reason": "not after this incident"}, format="json").status_code == 200
    held = PauseLayer.objects.filter(plan_id=intent.plan_id, lifted_at__isnull=True)
    assert set(held.values_list("kind", flat=True)) == {PauseKind.KILL_SWITCH, PauseKind.PERSON}
    # when: the switch is released
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="over",
                             action_type=BRIEF)
    # then: the person's layer still holds the plan, and nothing is tried
    assert RevenuePlan.objects.get(pk=intent.plan_id).plan_status == PlanStatus.PAUSED
    assert engine.advance_plan(intent.plan_id) == []
    assert ActionIntent.objects.filter(plan_id=intent.plan_id).count() == 1
    assert not InternalRecord.objects.filter(account=world.account).exists()
