"""The next step in the same task (DESIGN §4): the advance that starts a plan's first step runs it itself, a
worker that finishes a step runs the plan's next runnable step itself, and a worker SIGKILLed in the middle of
that chain (in either step), or of a batch of plans one advance_plans message brought, loses nothing and
doubles nothing.

The chain is two PREP_RENEWAL_BRIEFs, the second depending on the first, routed to the CRM test server
(a tenant route), so each step is one HTTP call the test can see arrive and kill the worker in.
"""
import signal
import uuid
from collections import Counter

import pytest

from orchestrator.execution.models import ActionIntent, ActionRoute, ConnectorConfig, IntentStatus
from orchestrator.execution.service import effect_key_for
from plans import services
from plans.ledger.verify import verify_ledger
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan
from plans.schemas import PlanDraftInput, StepInput
from tests.conftest import build_world
from tests.factories import AccountFactory, allow_autopilot
from tests.integration.harness import received_task_ids, succeeded_task_ids, wait_for

BRIEF = "PREP_RENEWAL_BRIEF"
ADVANCE, EXECUTE = "orchestrator.advance_plans", "orchestrator.execute_step"  # the tick sends advance_plans
INLINE = "running the next step in the same task"


@pytest.fixture
def cluster(cluster):
    yield cluster
    for proc in cluster.procs:
        proc.signal_group(signal.SIGKILL)


def chained_plans(crm, count: int):
    world = build_world()
    allow_autopilot(world.tenant, BRIEF)
    ActionRoute.objects.create(tenant=world.tenant, action_type=BRIEF, connector="crm")
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"base_url": crm.base_url, "api_key": "k", "timeout_seconds": 15})
    plans = []
    for _ in range(count):
        account = AccountFactory(tenant=world.tenant, owner=world.seller)
        first, second = uuid.uuid4(), uuid.uuid4()
        steps = [StepInput(step_id=first, action_type=BRIEF), StepInput(step_id=second, action_type=BRIEF,
                                                                      depends_on=[first])]
        plan = services.plan_propose(account_id=account.id, plan_type="RENEWAL_DEFENSE",
                                     draft=PlanDraftInput(steps=steps), actor=world.seller)
        plans.append(services.plan_approve(plan_id=plan.id, user=world.admin))
    return world, plans


def slow_chained_plan(cluster, crm):
    """One chained plan, each CRM call 1.5 s (time to kill a worker in), a worker w0 and a beat running."""
    _, plans = chained_plans(crm, 1)
    crm.state.slow_seconds = 1.5
    worker = cluster.start_worker("w0")
    cluster.start_beat()
    return plans, worker


def assert_each_step_once(plans, crm) -> None:
    ids = [plan.id for plan in plans]
    assert set(RevenuePlan.objects.filter(pk__in=ids).values_list("plan_status", flat=True)) == {PlanStatus.COMPLETED}
    succeeded = Counter(ActionIntent.objects.filter(plan_id__in=ids, status=IntentStatus.SUCCEEDED)
                        .values_list("plan_id", "step_id"))
    executed = Counter(PlanLedgerEntry.objects.filter(plan_id__in=ids, event_type=EventType.ACTION_EXECUTED)
                       .values_list("plan_id", "step_id"))
    assert len(succeeded) == 2 * len(plans)
    assert set(succeeded.values()) == {1}
    assert executed == succeeded
    keys = sorted(effect_key_for(intent_id=None, plan_id=plan_id, step_id=step_id) for plan_id, step_id in succeeded)
    assert sorted(crm.state.tasks_by_key) == keys  # one CRM task per (plan, step)
    assert len(crm.state.tasks) == len(keys)
    for plan_id in ids:
        assert verify_ledger(plan_id=plan_id).ok


@pytest.mark.timeout(90)
def test_a_plans_steps_run_in_the_advance_that_started_the_first(cluster, crm):
    _, plans = chained_plans(crm, 3)
    worker = cluster.start_worker()
    cluster.start_beat()
    wait_for(lambda: RevenuePlan.objects.filter(pk__in=[p.id for p in plans], plan_status=PlanStatus.COMPLETED)
             .count() == len(plans), timeout=60, what="the chained plans to complete")
    assert_each_step_once(plans, crm)
    # The advance that activated each plan ran its first step, then the second: both in that task, no
    # execute_step message at all.
    assert len(succeeded_task_ids(worker, ADVANCE)) >= len(plans)
    assert succeeded_task_ids(worker, EXECUTE) == set()
    assert worker.log_path.read_text(errors="replace").count(INLINE) == 2 * len(plans)


@pytest.mark.timeout(90)
def test_with_the_advance_kept_from_steps_each_first_step_goes_by_message(cluster, crm):
    # Pools split by queue: the advance's workers never call a connector; the execute task runs both steps.
    _, plans = chained_plans(crm, 2)
    worker = cluster.start_worker(env={"ORCHESTRATOR_ADVANCE_RUNS_STEPS": "0"})
    cluster.start_beat()
    wait_for(lambda: RevenuePlan.objects.filter(pk__in=[p.id for p in plans], plan_status=PlanStatus.COMPLETED)
             .count() == len(plans), timeout=60, what="the chained plans to complete")
    assert_each_step_once(plans, crm)
    assert len(succeeded_task_ids(worker, EXECUTE)) >= len(plans)
    assert worker.log_path.read_text(errors="replace").count(INLINE) == len(plans)


@pytest.mark.timeout(120)
def test_worker_killed_in_the_middle_of_a_chain_loses_nothing_and_doubles_nothing(cluster, crm):
    # given: one chained plan, a CRM slow enough to be killed in
    plans, worker = slow_chained_plan(cluster, crm)
    (plan,) = plans
    # when: the first step has committed and the same task has sent the second step's request: SIGKILL
    first_done = ActionIntent.objects.filter(plan=plan, status=IntentStatus.SUCCEEDED)
    wait_for(lambda: first_done.exists() and len(crm.state.posts()) == 2, timeout=60, interval=0.02,
             what="the second step's CRM call, from the task that ran the first")
    worker.kill()
    second = ActionIntent.objects.get(plan=plan, status=IntentStatus.EXECUTING)
    assert second.deliveries == 1
    assert second.attempts == 1
    # then: its lease runs out, the tick hands it to a new worker, which finds the same effect
    cluster.start_worker("w1")
    wait_for(lambda: RevenuePlan.objects.filter(pk=plan.id, plan_status=PlanStatus.COMPLETED).exists(),
             timeout=60, what="the plan to complete after the takeover")
    assert_each_step_once(plans, crm)
    taken_over = ActionIntent.objects.get(pk=second.pk)
    assert taken_over.status == IntentStatus.SUCCEEDED
    assert taken_over.deliveries == 2
    posts = crm.state.posts()
    assert len(posts) == 3  # first step, the killed call, the takeover's (same Idempotency-Key)
    assert posts[1][2]["Idempotency-Key"] == posts[2][2]["Idempotency-Key"]


@pytest.mark.timeout(120)
def test_worker_killed_in_the_step_its_advance_runs_loses_nothing_and_doubles_nothing(cluster, crm):
    # given: one chained plan, a CRM slow enough to be killed in
    plans, worker = slow_chained_plan(cluster, crm)
    (plan,) = plans
    # when: the advance has activated the plan, committed the first step's claim and sent its request: SIGKILL
    wait_for(lambda: len(crm.state.posts()) == 1, timeout=60, interval=0.02,
             what="the first step's CRM call, from the advance that started it")
    worker.kill()
    first = ActionIntent.objects.get(plan=plan, status=IntentStatus.EXECUTING)
    assert (first.deliveries, first.attempts) == (1, 1)
    assert not ActionIntent.objects.filter(plan=plan).exclude(pk=first.pk).exists()
    # then: the attempt's lease runs out, the tick hands it to a new worker, which sends it with the same effect
    # key, and the plan completes with each step once (the killed advance's message, unacked, comes back only
    # after the broker's visibility sweep, ~100 s here, and finds nothing to do)
    killed_log = worker.log_path.read_text(errors="replace")
    assert f"Task {EXECUTE}[" not in killed_log  # the call came from the advance, not from a step's message
    assert killed_log.count(INLINE) == 1
    killed_advances = received_task_ids(worker, ADVANCE) - succeeded_task_ids(worker, ADVANCE)
    assert len(killed_advances) == 1
    cluster.start_worker("w1")
    wait_for(lambda: RevenuePlan.objects.filter(pk=plan.id, plan_status=PlanStatus.COMPLETED).exists(),
             timeout=60, what="the plan to complete after the takeover")
    assert_each_step_once(plans, crm)
    assert ActionIntent.objects.get(pk=first.pk).deliveries == 2
    posts = crm.state.posts()
    assert len(posts) == 3  # the killed call, the takeover's (same Idempotency-Key), the second step
    assert posts[0][2]["Idempotency-Key"] == posts[1][2]["Idempotency-Key"]


@pytest.mark.timeout(150)
def test_worker_killed_in_the_middle_of_a_batch_loses_nothing_and_doubles_nothing(cluster, crm):
    # given: three chained plans the tick sends in one advance_plans message (a spread of 1), a slow CRM
    _, plans = chained_plans(crm, 3)
    crm.state.slow_seconds = 1.5
    worker = cluster.start_worker("w0", env={"ORCHESTRATOR_ADVANCE_SPREAD": "1"})
    cluster.start_beat()
    # when: the batch's one transaction has committed all three first steps, created claimed by its task, and the
    # task is inside the first one's CRM call: SIGKILL
    wait_for(lambda: len(crm.state.posts()) == 1, timeout=60, interval=0.02, what="the batch's first CRM call")
    worker.kill()
    ids = [plan.id for plan in plans]
    claimed = ActionIntent.objects.filter(plan_id__in=ids)
    assert claimed.count() == 3
    assert set(claimed.values_list("status", flat=True)) == {IntentStatus.EXECUTING}
    killed_log = worker.log_path.read_text(errors="replace")
    assert len(received_task_ids(worker, ADVANCE)) == 1
    assert succeeded_task_ids(worker, ADVANCE) == set()
    assert f"Task {EXECUTE}[" not in killed_log
    # then: the leases run out, the tick hands the three attempts to a new worker (the killed call's with the same
    # effect key, the two never sent for the first time), and every plan completes with each step once
    cluster.start_worker("w1")
    wait_for(lambda: RevenuePlan.objects.filter(pk__in=ids, plan_status=PlanStatus.COMPLETED).count() == 3,
             timeout=90, what="the batch's plans to complete after the takeover")
    assert_each_step_once(plans, crm)
    assert len(crm.state.posts()) == 2 * len(plans) + 1  # each step once, and the killed call's resend
