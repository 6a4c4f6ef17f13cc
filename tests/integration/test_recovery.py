"""Recovery with real workers: duplicated messages, a message lost between commit and enqueue, and a step
whose worker process dies on every delivery. No step executes twice, and every plan reaches a state a person
can act on."""
import time
import uuid

import pytest
import redis
from celery import Celery

from orchestrator import engine
from orchestrator.engine import RETRY_LIMIT_EXCEEDED, StepKey
from orchestrator.execution.models import (
    ActionIntent,
    AttemptOutcome,
    ExecutionAttempt,
    FailureClass,
    IntentStatus,
    InternalRecord,
)
from plans import ledger, services
from plans.models import EventType, PlanStatus, PlanStep, StepStatus
from plans.plan_types import RENEWAL_DEFENSE
from plans.schemas import PlanDraftInput, StepInput
from tests.conftest import build_world
from tests.factories import allow_autopilot
from tests.integration.harness import Cluster, Proc, wait_for
from tests.integration.test_plan_runs import BRIEF, ESCALATE, chained_plan, entries, plan_status, use_crm
from tests.support.crashing_worker import CRASH_PARAMETER
from tests.support.radicale_server import free_port

MAX_DELIVERIES = 2
LEASE_SECONDS = 2
SIGKILLED = "exited with 'signal 9 (SIGKILL)'"  # what the worker's main process logs when a pool process dies


def wait_ready(*workers: Proc) -> None:
    """A worker's consumer is up (it logs `ready.`), so messages sent now are taken at once."""
    for worker in workers:
        wait_for(lambda w=worker: "ready." in w.log_path.read_text(errors="replace"), timeout=60,
                 what=f"worker {worker.name} to be ready")


def activate_and_approve(world, plan) -> list[StepKey]:
    """In this process: activate the plan (its HIGH-risk step asks for a person), approve it, commit the attempt."""
    assert engine.advance_plan(plan.id) == []
    step = PlanStep.objects.get(plan=plan)
    assert step.status == StepStatus.PENDING_APPROVAL
    services.step_approve(plan_id=plan.id, step_id=step.step_id, user=world.approver)
    return engine.advance_plan(plan.id)


def send_execute_step(cluster: Cluster, key: StepKey, *, copies: int) -> None:
    """Publish execute_step messages straight to the cluster's broker, as advance_plan or a redelivery would."""
    client = Celery("revplan-test-client", broker=cluster.env["CELERY_BROKER_URL"])
    try:
        with client.producer_or_acquire() as producer:
            for _ in range(copies):
                client.send_task("orchestrator.execute_step", args=[str(key.plan_id), str(key.step_id), key.attempt],
                                 kwargs={"enqueued_at": time.time()}, queue="execute", producer=producer)
    finally:
        client.close()


def broker_drained(cluster: Cluster) -> bool:
    """Nothing waiting in the execute queue and nothing delivered but unacknowledged."""
    broker = redis.Redis(port=cluster.redis_port)
    try:
        return broker.llen("execute") == 0 and broker.hlen("unacked") == 0
    finally:
        broker.close()


def log_count(workers: list[Proc], text: str) -> int:
    return sum(worker.log_path.read_text(errors="replace").count(text) for worker in workers)


def task_log_count(workers: list[Proc], task: str, event: str) -> int:
    """How many `Task <task>[<id>] <event>` lines the workers logged (event: received, succeeded in ...)."""
    return sum(
        1
        for worker in workers
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if f"Task {task}[" in line and f"] {event}" in line
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cluster_env", [
    pytest.param({}, id="redis-locks"),
    # Nothing listens there: every lock is "unavailable", the copies go on unlocked and only the database guards.
    pytest.param({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, id="database-alone"),
])
def test_the_same_step_attempt_sent_twenty_times_at_once_executes_once(cluster, crm):
    # given: attempt 1 of the CRM step is committed; the CRM is slow, so the first execution is still in
    # flight while the duplicates arrive
    world = build_world()
    use_crm(world, crm, timeout_seconds=10)
    crm.state.slow_seconds = 1.0
    plan = chained_plan(world, ESCALATE)
    [key] = activate_and_approve(world, plan)  # commits the attempt; sending it is ours
    workers = [cluster.start_worker("w1", concurrency=3), cluster.start_worker("w2", concurrency=3)]
    wait_ready(*workers)
    # when: 20 copies of its message land at once on two workers with three processes each (no beat)
    send_execute_step(cluster, key, copies=20)
    # then
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=60, what="the plan to complete")
    wait_for(lambda: broker_drained(cluster), timeout=30, what="every copy to be consumed")
    wait_for(lambda: task_log_count(workers, "orchestrator.execute_step", "succeeded in") == 20, timeout=30,
             what="every copy to finish")
    assert task_log_count(workers, "orchestrator.execute_step", "received") == 20
    assert log_count(workers, "raised unexpected") == 0
    intent = ActionIntent.objects.get(plan=plan)
    assert (intent.attempt, intent.status, intent.deliveries) == (key.attempt, IntentStatus.SUCCEEDED, 1)
    assert list(ExecutionAttempt.objects.filter(intent=intent).values_list("number", "outcome")) == [
        (1, AttemptOutcome.SUCCEEDED)]
    assert len(crm.state.posts()) == 1
    assert list(crm.state.tasks) == [intent.external_ids["task_id"]]
    assert len(entries(plan, EventType.ACTION_EXECUTED)) == 1
    assert len(entries(plan, EventType.STEP_ATTEMPT_STARTED)) == 1
    assert plan.completion_reason == "all_steps_done"
    assert PlanStep.objects.get(plan=plan).status == StepStatus.DONE
    assert ledger.verify_ledger(plan_id=plan.id).ok


@pytest.mark.timeout(120)
def test_an_attempt_committed_but_never_enqueued_is_sent_again_by_the_tick(cluster, crm, settings):
    # given: an advance committed attempt 1 and its process died before enqueueing the message
    settings.ORCHESTRATOR_REDELIVERY_SECONDS = float(cluster.env["ORCHESTRATOR_REDELIVERY_SECONDS"])
    world = build_world()
    use_crm(world, crm)
    plan = chained_plan(world, ESCALATE)
    [key] = activate_and_approve(world, plan)
    intent = ActionIntent.objects.get(plan=plan)
    assert (intent.status, intent.deliveries) == (IntentStatus.PENDING, 0)
    # when: a worker and a beat start (the broker never saw the message)
    cluster.start_worker()
    cluster.start_beat()
    # then: the tick sends the same attempt again and the plan completes with one effect
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=60, what="the plan to complete")
    intent.refresh_from_db()
    assert ActionIntent.objects.filter(plan=plan).count() == 1
    assert (intent.attempt, intent.status, intent.deliveries) == (key.attempt, IntentStatus.SUCCEEDED, 1)
    assert ExecutionAttempt.objects.filter(intent=intent).count() == 1
    assert len(crm.state.posts()) == 1
    assert len(entries(plan, EventType.STEP_ATTEMPT_STARTED)) == 1
    assert len(entries(plan, EventType.ACTION_EXECUTED)) == 1
    assert plan.completion_reason == "all_steps_done"
    assert ledger.verify_ledger(plan_id=plan.id).ok


@pytest.mark.timeout(180)
@pytest.mark.parametrize("cluster_env", [{
    "ORCHESTRATOR_MAX_DELIVERIES": str(MAX_DELIVERIES),
    # The tick redelivers an attempt once its lease ran out: a short lease keeps each death cycle short.
    "REVPLAN_EXECUTION_LEASE_SECONDS": str(LEASE_SECONDS),
}])
def test_a_step_whose_worker_process_dies_on_every_delivery_fails_after_bounded_deliveries(cluster):
    # given: a brief whose execution SIGKILLs the worker's pool process every time (tests.support.crashing_worker)
    world = build_world()
    allow_autopilot(world.tenant, BRIEF)
    brief = StepInput(step_id=uuid.uuid4(), action_type=BRIEF, parameters={CRASH_PARAMETER: True})
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=PlanDraftInput(steps=[brief]), actor=world.seller)
    services.plan_approve(plan_id=plan.id, user=world.admin)
    worker = cluster.start_worker(app="tests.support.crashing_worker")
    cluster.start_beat()
    # when
    wait_for(lambda: plan_status(plan) == PlanStatus.PAUSED, timeout=150, what="the plan to pause")
    # then: each attempt was given up (WORKER_LOST) after MAX_DELIVERIES deaths, and the step after retry_limit
    attempts = RENEWAL_DEFENSE.retry_limit
    assert plan.stop_reason_code == RETRY_LIMIT_EXCEEDED
    step = PlanStep.objects.get(plan=plan)
    assert (step.status, step.attempts) == (StepStatus.FAILED, attempts)
    assert step.last_error.startswith(FailureClass.WORKER_LOST)
    intents = ActionIntent.objects.filter(plan=plan).order_by("attempt")
    assert [(i.attempt, i.status, i.failure_class, i.deliveries) for i in intents] == [
        (n, IntentStatus.FAILED, FailureClass.WORKER_LOST, MAX_DELIVERIES + 1) for n in range(1, attempts + 1)]
    assert not ExecutionAttempt.objects.filter(intent__in=intents).exists()
    assert not InternalRecord.objects.filter(tenant=world.tenant).exists()
    assert len(entries(plan, EventType.ACTION_FAILED)) == attempts
    assert len(entries(plan, EventType.STEP_RETRY_SCHEDULED)) == attempts - 1
    *_, paused, layer_added = entries(plan)
    assert (paused.event_type, paused.reason_code) == (EventType.PLAN_PAUSED, RETRY_LIMIT_EXCEEDED)
    assert (layer_added.event_type, layer_added.data["layer"]["kind"]) == (EventType.PAUSE_LAYER_ADDED, "RETRY_LIMIT")
    # One death per delivery but the last; the worker may log a death a few seconds after it happened.
    deaths = attempts * MAX_DELIVERIES
    wait_for(lambda: log_count([worker], SIGKILLED) >= deaths, timeout=20, what=f"{deaths} pool processes to die")
    # and it stays stopped: no further deliveries, deaths or attempts once the leases have long run out
    time.sleep(LEASE_SECONDS + 3)
    assert plan_status(plan) == PlanStatus.PAUSED
    assert list(ActionIntent.objects.filter(plan=plan).values_list("deliveries", flat=True)) == [
        MAX_DELIVERIES + 1] * attempts
    assert log_count([worker], SIGKILLED) == deaths
    assert worker.alive()
    assert ledger.verify_ledger(plan_id=plan.id).ok
