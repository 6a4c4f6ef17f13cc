"""Failure tests with real celery processes (DESIGN §4): a worker SIGKILLed mid-step again and again,
two beats at once, the broker's Redis restarted mid-run, and a worker frozen past its lease.

Each test starts its own victims through the `cluster` fixture (a private redis-server, workers and
beats killed by pid) and asserts on outcomes: every plan reaches its end, and every (plan, step) has
one external effect — one task at the CRM test server (which dedupes by Idempotency-Key), one event
at Radicale, one InternalRecord — and one success in the ledger.
"""
import signal
import time
import uuid
from collections import Counter
from contextlib import suppress

import caldav
import pytest

from orchestrator.execution.connectors.calendar import CalendarConnector, event_uid
from orchestrator.execution.models import (
    ActionIntent,
    AttemptOutcome,
    ConnectorConfig,
    ExecutionAttempt,
    FailureClass,
    IntentStatus,
    InternalRecord,
)
from orchestrator.execution.service import effect_key_for
from plans import services
from plans.errors import DomainError
from plans.lifecycle import TERMINAL
from plans.models import EventType, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.schemas import PlanDraftInput, StepInput
from tests.conftest import build_world
from tests.factories import AccountFactory, allow_autopilot
from tests.integration.harness import sent_task_ids, succeeded_task_ids, wait_for

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"
ALL_STEPS = (MEETING, BRIEF, ESCALATE)
TICK = "orchestrator.tick"
STALE_SUCCESS_REFUSED = "stale worker's success refused"


@pytest.fixture
def cluster_env():
    # A worker killed inside advance_plan leaves the plan's Redis lock behind until it expires; the
    # production TTL (60 s) would only slow these tests down, so it is as short as the lease here.
    return {"ORCHESTRATOR_PLAN_LOCK_SECONDS": "5"}


@pytest.fixture
def cluster(cluster):
    """The shared fixture, but its processes are SIGKILLed once the test is over: a graceful stop of
    every worker and beat would only add seconds to a test that already has its outcome."""
    yield cluster
    for proc in cluster.procs:
        proc.signal_group(signal.SIGKILL)


# --- setup -------------------------------------------------------------------------------------


def connected_world(crm, radicale):
    world = build_world()
    allow_autopilot(world.tenant, BRIEF)  # the meeting and the (HIGH-risk) escalation wait for a person
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar",
                                   settings={"url": radicale.url, "timeout_seconds": 5})
    # Longer than the slowest scripted CRM answer: a slow call is slow, not a timeout.
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"base_url": crm.base_url, "api_key": "k", "timeout_seconds": 15})
    return world


def approved_plan(world, action_types=ALL_STEPS) -> RevenuePlan:
    """An approved plan on a fresh account; its steps are independent, so they run side by side."""
    account = AccountFactory(tenant=world.tenant, owner=world.seller)
    steps = [StepInput(step_id=uuid.uuid4(), action_type=action_type) for action_type in action_types]
    plan = services.plan_propose(account_id=account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=PlanDraftInput(steps=steps), actor=world.seller)
    return services.plan_approve(plan_id=plan.id, user=world.admin)


def approve_waiting_steps(world, *, action_type: str | None = None) -> None:
    """The seller approves each step (meeting, escalation) as soon as it waits for a person."""
    waiting = PlanStep.objects.filter(plan__tenant=world.tenant, status=StepStatus.PENDING_APPROVAL)
    for step in waiting.filter(action_type=action_type) if action_type else waiting:
        with suppress(DomainError):  # the plan moved on meanwhile
            services.step_approve(plan_id=step.plan_id, step_id=step.step_id, user=world.seller)


def wait_until_settled(world, plans, *, timeout: float) -> None:
    ids = [plan.id for plan in plans]

    def settled() -> bool:
        approve_waiting_steps(world)
        statuses = RevenuePlan.objects.filter(pk__in=ids).values_list("plan_status", flat=True)
        return all(status in TERMINAL for status in statuses)

    wait_for(settled, timeout=timeout, interval=0.25, what="every plan to reach a terminal state")


def crm_call_in_flight(plans, posts_before: int, crm) -> bool:
    """A worker is inside the slow CRM call: the server has a new request and the intent is EXECUTING."""
    return len(crm.state.posts()) > posts_before and ActionIntent.objects.filter(
        plan__in=plans, action_type=ESCALATE, status=IntentStatus.EXECUTING
    ).exists()


# --- outcomes ----------------------------------------------------------------------------------


def effect_key(step: PlanStep) -> str:
    return effect_key_for(intent_id=None, plan_id=step.plan_id, step_id=step.step_id)


def calendar_uids(world, radicale) -> Counter:
    calendar_url = CalendarConnector({"url": radicale.url}, tenant_slug=world.tenant.slug).calendar_url
    client = caldav.DAVClient(url=radicale.url, username="revplan", password="")
    return Counter(str(event.icalendar_component["uid"]) for event in client.calendar(url=calendar_url).events())


def assert_each_step_took_effect_once(world, plans, crm, radicale) -> list[PlanStep]:
    """Every plan COMPLETED; every (plan, step) one effect outside and one success in the ledger.

    Not one successful try per step: a worker killed between recording its try and finishing the
    intent leaves a try behind, and the next attempt's try finds the same effect (tests 2 and 4 check
    tries where no worker dies mid-step)."""
    statuses = dict(RevenuePlan.objects.filter(pk__in=[plan.id for plan in plans]).values_list("id", "plan_status"))
    assert statuses == {plan.id: PlanStatus.COMPLETED for plan in plans}
    steps = list(PlanStep.objects.filter(plan__in=plans))
    assert len(steps) == len(plans) * len(ALL_STEPS)
    assert {step.status for step in steps} <= {StepStatus.DONE, StepStatus.AUTO_EXECUTED}
    once = {step.step_id: 1 for step in steps}
    succeeded = Counter(ActionIntent.objects.filter(plan__in=plans, status=IntentStatus.SUCCEEDED)
                        .values_list("step_id", flat=True))
    assert succeeded == once
    executed = Counter(PlanLedgerEntry.objects.filter(plan__in=plans, event_type=EventType.ACTION_EXECUTED)
                       .values_list("step_id", flat=True))
    assert executed == once
    by_type = {action_type: [step for step in steps if step.action_type == action_type] for action_type in ALL_STEPS}
    # CRM: one task per step's Idempotency-Key, and no task without one.
    assert sorted(crm.state.tasks_by_key) == sorted(effect_key(step) for step in by_type[ESCALATE])
    assert len(crm.state.tasks) == len(by_type[ESCALATE])
    # Radicale: one draft meeting per meeting step.
    assert calendar_uids(world, radicale) == {event_uid(effect_key(step)): 1 for step in by_type[MEETING]}
    # Internal: one brief per brief step.
    briefs = Counter(InternalRecord.objects.filter(tenant=world.tenant).values_list("effect_key", flat=True))
    assert briefs == {effect_key(step): 1 for step in by_type[BRIEF]}
    return steps


# --- the tests ---------------------------------------------------------------------------------

KILLS = 10
SLOW_CRM_SECONDS = 2.0  # well inside the 5 s lease, so only a dead worker loses its claim


@pytest.mark.timeout(240)
def test_worker_killed_mid_step_ten_times_every_step_takes_effect_once(cluster, crm, radicale):
    # given: three plans with all three action types, and a CRM slow enough to be killed in
    world = connected_world(crm, radicale)
    plans = [approved_plan(world) for _ in range(3)]
    crm.state.slow_seconds = SLOW_CRM_SECONDS
    cluster.start_beat()
    worker = cluster.start_worker("w0")
    # when: each time a worker is inside a CRM call, SIGKILL it (pool and all) and start a new one
    for kill in range(1, KILLS + 1):
        posts_before = len(crm.state.posts())

        def mid_step(posts_before=posts_before) -> bool:
            approve_waiting_steps(world)
            return crm_call_in_flight(plans, posts_before, crm)

        wait_for(mid_step, timeout=60, interval=0.05, what=f"a CRM call in flight to kill (kill {kill})")
        worker.kill()
        worker = cluster.start_worker(f"w{kill}")
    # then: the leases run out, the tick hands the steps to the new workers, and each takes effect once
    wait_until_settled(world, plans, timeout=90)
    steps = assert_each_step_took_effect_once(world, plans, crm, radicale)
    # An attempt killed too often is given up (WORKER_LOST) and the step's next attempt finds the same effect.
    given_up = ActionIntent.objects.filter(plan__in=plans).exclude(status=IntentStatus.SUCCEEDED)
    assert set(given_up.values_list("failure_class", flat=True)) <= {FailureClass.WORKER_LOST}
    # Every kill interrupted a CRM call, and the retries went out under the same Idempotency-Key.
    escalations = {effect_key(step) for step in steps if step.action_type == ESCALATE}
    posts = crm.state.posts()
    assert len(posts) >= KILLS + len(plans)
    assert {request[2]["Idempotency-Key"] for request in posts} == escalations


BEATS_RUN_SECONDS = 60


@pytest.mark.timeout(200)
def test_two_beats_for_a_minute_execute_no_step_twice(cluster, crm, radicale):
    # given: two beats ticking every second against one worker (two pool processes)
    world = connected_world(crm, radicale)
    crm.state.slow_seconds = 0.3
    beats = [cluster.start_beat_logging_ids("beat-a"), cluster.start_beat_logging_ids("beat-b")]
    worker = cluster.start_worker()
    # when: for a minute, two new plans arrive every ten seconds
    plans, started = [], time.monotonic()
    while (elapsed := time.monotonic() - started) < BEATS_RUN_SECONDS:
        if len(plans) < 2 * (1 + int(elapsed // 10)):
            plans += [approved_plan(world), approved_plan(world)]
        approve_waiting_steps(world)
        time.sleep(0.25)
    assert all(beat.alive() for beat in beats)
    wait_until_settled(world, plans, timeout=60)
    # then: every step ran one attempt, which called its connector once and took effect once
    assert len(plans) == 12
    steps = assert_each_step_took_effect_once(world, plans, crm, radicale)
    intents = list(ActionIntent.objects.filter(plan__in=plans))
    assert sorted((intent.step_id, intent.attempt) for intent in intents) == sorted((s.step_id, 1) for s in steps)
    attempts = Counter(ExecutionAttempt.objects.filter(intent__in=intents).values_list("intent_id", "number"))
    assert attempts == {(intent.id, 1): 1 for intent in intents}
    started_entries = Counter(PlanLedgerEntry.objects.filter(plan__in=plans, event_type=EventType.STEP_ATTEMPT_STARTED)
                              .values_list("step_id", flat=True))
    assert started_entries == {step.step_id: 1 for step in steps}
    assert Counter(request[2]["Idempotency-Key"] for request in crm.state.posts()) == {
        effect_key(step): 1 for step in steps if step.action_type == ESCALATE
    }
    # ... and ticks from both beats reached the worker and ran.
    ran = succeeded_task_ids(worker, TICK)
    ran_per_beat = [len(sent_task_ids(beat, TICK) & ran) for beat in beats]
    assert all(count >= 10 for count in ran_per_beat), ran_per_beat


@pytest.mark.timeout(180)
def test_redis_restarted_mid_run_every_plan_still_ends_and_no_step_runs_twice(cluster, crm, radicale):
    # given: four plans in flight: a CRM call under way (an unacked message in Redis) and
    # more work waiting in the queues (an execute_step, or the advance that would start the next step).
    # One worker process, so the other escalations queue behind the slow call instead of running beside it.
    world = connected_world(crm, radicale)
    plans = [approved_plan(world) for _ in range(4)]
    crm.state.slow_seconds = SLOW_CRM_SECONDS
    cluster.start_beat()
    worker = cluster.start_worker(concurrency=1)
    broker = cluster.redis_client()

    def escalations_in_flight() -> bool:
        approve_waiting_steps(world, action_type=ESCALATE)  # the meetings wait until after the restart
        return crm_call_in_flight(plans, 0, crm) and broker.llen("execute") + broker.llen("advance") > 0

    wait_for(escalations_in_flight, timeout=60, interval=0.05,
             what="a CRM call in flight and messages waiting in the queues")
    # The call runs in an execute_step task (holding its step lock) or, as a step some task started and runs
    # itself (an advance's first, or the plan's next after its brief finished: no step lock, its intent's lease
    # guards it), in that advance_plan or execute_step task. Either way that task's message is unacked.
    unacked_tags, step_locks = set(broker.hkeys("unacked")), set(broker.keys("revplan:lock:step:*"))
    assert unacked_tags
    old_run_id = broker.info("server")["run_id"]
    # when: Redis dies and an empty one takes its place (queued messages and locks are gone)
    cluster.restart_redis()
    # The worker reconnects (and declares its queues) at once, so the new Redis is not asserted empty:
    # what matters is that the in-flight message and the step locks did not survive.
    fresh = cluster.redis_client()
    assert fresh.info("server")["run_id"] != old_run_id
    assert not unacked_tags & set(fresh.hkeys("unacked"))
    assert not step_locks & set(fresh.keys("revplan:lock:step:*"))
    # then: the same worker and beat reconnect; the meetings, approved only now, run on the new Redis
    wait_until_settled(world, plans, timeout=120)
    assert worker.alive()
    worker_log = worker.log_path.read_text(errors="replace")
    assert "Connection to broker lost" in worker_log
    assert worker_log.count("Connected to redis://") >= 2
    assert_each_step_took_effect_once(world, plans, crm, radicale)


@pytest.mark.timeout(150)
def test_worker_frozen_past_its_lease_has_its_result_refused_after_another_took_over(cluster, crm, radicale):
    # given: one worker inside a slow CRM call
    world = connected_world(crm, radicale)
    plan = approved_plan(world, (BRIEF, ESCALATE))
    crm.state.slow_seconds = 3.0
    cluster.start_beat()
    frozen = cluster.start_worker("frozen", concurrency=1)

    def in_flight() -> bool:
        approve_waiting_steps(world)
        return crm_call_in_flight([plan], 0, crm)

    wait_for(in_flight, timeout=60, interval=0.05, what="a CRM call in flight")
    intent = ActionIntent.objects.get(plan=plan, action_type=ESCALATE)
    # when: it is frozen past its lease, and a second worker takes the attempt over
    frozen.signal_group(signal.SIGSTOP)
    try:
        crm.state.slow_seconds = 0  # only the frozen worker's call is slow
        cluster.start_worker("rescuer", concurrency=1)
        wait_for(lambda: ActionIntent.objects.get(pk=intent.pk).status == IntentStatus.SUCCEEDED, timeout=60,
                 interval=0.1, what="the second worker to finish the attempt")
    finally:
        frozen.signal_group(signal.SIGCONT)
    # then: the thawed worker gets its CRM answer, and its success is refused
    wait_for(lambda: STALE_SUCCESS_REFUSED in frozen.log_path.read_text(errors="replace"), timeout=30,
             what="the thawed worker's result to be refused")
    wait_for(lambda: RevenuePlan.objects.get(pk=plan.id).plan_status == PlanStatus.COMPLETED, timeout=30,
             what="the plan to complete")
    intent.refresh_from_db()
    assert intent.status == IntentStatus.SUCCEEDED
    assert ActionIntent.objects.filter(plan=plan, action_type=ESCALATE).count() == 1
    # One effect: both workers sent the same Idempotency-Key and the CRM made one task.
    assert [request[2]["Idempotency-Key"] for request in crm.state.posts()] == [intent.effect_key] * 2
    assert len(crm.state.tasks) == 1
    assert intent.external_ids == {"task_id": next(iter(crm.state.tasks))}
    # One outcome: one SUCCEEDED attempt, one ACTION_EXECUTED entry.
    outcomes = list(ExecutionAttempt.objects.filter(intent=intent).values_list("outcome", flat=True))
    assert outcomes.count(AttemptOutcome.SUCCEEDED) == 1, outcomes
    executed = PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.ACTION_EXECUTED, step_id=intent.step_id)
    assert executed.count() == 1
