"""Circuit breakers with a real worker and beat (issue 17's done-when): a CRM that fails every request opens
the tenant's crm breaker past its threshold; the plans are held [BREAKER] and nothing reaches the CRM but
the half-open probes; once it answers, one probe closes the breaker, the held plans run on and complete,
one effect each; every move of the breaker is in the tenant's ledger chain."""
import uuid

import pytest

from orchestrator.breakers import machine
from orchestrator.breakers.models import BreakerState, CircuitBreaker
from orchestrator.execution.models import ActionRoute, ConnectorConfig
from plans import ledger, services
from plans.models import EventType, PauseKind, PauseLayer, PlanLedgerEntry, PlanStatus, RevenuePlan
from plans.plan_types import RENEWAL_DEFENSE, get_action_type
from plans.schemas import PlanDraftInput, StepInput
from tests.api.helpers import client_for
from tests.conftest import build_world
from tests.factories import AccountFactory, allow_autopilot
from tests.integration.harness import wait_for

BRIEF = "PREP_RENEWAL_BRIEF"
PLANS = 6
MIN_TRIES = 8
BREAKER_EVENTS = (EventType.BREAKER_OPENED, EventType.BREAKER_HALF_OPENED, EventType.BREAKER_CLOSED,
                  EventType.BREAKER_FORCED)


@pytest.fixture
def cluster_env():
    # 8 tries: fewer than the plans' tries, more than one step's (3); a cool-down long enough to see that
    # nothing is sent while it lasts, short enough for a test; the sweep every second.
    return {"REVPLAN_BREAKER_MIN_TRIES": str(MIN_TRIES), "REVPLAN_BREAKER_FAILURE_RATE": "0.5",
            "REVPLAN_BREAKER_COOL_DOWN_SECONDS": "4", "REVPLAN_BREAKER_SWEEP_SECONDS": "1"}


def crm_world(crm):
    """A tenant whose brief (run on its own) is a CRM task, sent to the stand-in CRM."""
    world = build_world()
    allow_autopilot(world.tenant, BRIEF)
    ActionRoute.objects.create(tenant=world.tenant, action_type=BRIEF, connector="crm")
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"base_url": crm.base_url, "api_key": "k", "timeout_seconds": 2})
    return world


def approved_brief_plan(world) -> RevenuePlan:
    account = AccountFactory(tenant=world.tenant, owner=world.seller)
    plan = services.plan_propose(account_id=account.id, plan_type="RENEWAL_DEFENSE", actor=world.seller,
                                 draft=PlanDraftInput(steps=[StepInput(step_id=uuid.uuid4(), action_type=BRIEF)]))
    return services.plan_approve(plan_id=plan.id, user=world.admin)


def breaker_state(world) -> str:
    return (CircuitBreaker.objects.filter(tenant=world.tenant, connector="crm").values_list("state", flat=True)
            .first()) or BreakerState.CLOSED


def held_by_breaker(plans) -> set:
    return set(PauseLayer.objects.filter(plan__in=plans, kind=PauseKind.BREAKER, scope="crm", lifted_at__isnull=True,
                                         plan__plan_status=PlanStatus.PAUSED).values_list("plan_id", flat=True))


def breaker_moves(world) -> list[tuple[str, str]]:
    return list(PlanLedgerEntry.objects.filter(tenant=world.tenant, plan__isnull=True, event_type__in=BREAKER_EVENTS)
                .order_by("chain_seq").values_list("event_type", "reason_code"))


def failed_probes(world) -> int:
    return breaker_moves(world).count((EventType.BREAKER_OPENED, machine.PROBE_FAILED))


@pytest.mark.timeout(180)
def test_a_failing_crm_opens_the_breaker_holds_the_plans_and_one_probe_closes_it_once_the_crm_is_back(cluster, crm):
    # given: a CRM that answers 503 to every request, and six plans whose one step is a CRM task
    world = crm_world(crm)
    crm.state.scripted = [503] * 10_000
    plans = [approved_brief_plan(world) for _ in range(PLANS)]
    cluster.start_worker()
    cluster.start_beat()
    # then: the breaker opens past its threshold, and every plan is held by it instead of burning retries
    wait_for(lambda: breaker_state(world) != BreakerState.CLOSED, timeout=60, what="the breaker to open")
    wait_for(lambda: held_by_breaker(plans) == {plan.id for plan in plans}, timeout=60,
             what="every plan to be held [BREAKER]")
    first_moves = breaker_moves(world)
    assert first_moves[0] == (EventType.BREAKER_OPENED, machine.FAILURE_RATE_EXCEEDED)
    opened = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.BREAKER_OPENED).earliest(
        "chain_seq")
    assert opened.data["evidence"]["tries"] >= MIN_TRIES
    assert opened.data["evidence"]["failures"] >= opened.data["evidence"]["tries"] / 2
    tries_per_step = get_action_type(BRIEF).max_attempts
    all_retries = PLANS * tries_per_step * RENEWAL_DEFENSE.retry_limit
    sent_when_held = len(crm.state.posts())
    assert sent_when_held < all_retries / 2
    # the plans say so: [BREAKER], waiting on the system
    api = client_for(world.seller)
    for plan in plans:
        blocked_by = api.get(f"/api/v1/plans/{plan.id}/").json()["blocked_by"]
        assert [(item["code"], item["waits_on"]) for item in blocked_by] == [("BREAKER", "SYSTEM")]
    # while it is open nothing reaches the CRM but one request per half-open probe, each of which fails
    probes_before = failed_probes(world)
    wait_for(lambda: failed_probes(world) >= probes_before + 1, timeout=30, what="a probe to fail")
    probes_seen = failed_probes(world)
    sent = len(crm.state.posts())
    probes_after = failed_probes(world)
    assert sent_when_held + probes_seen - probes_before <= sent <= sent_when_held + probes_after - probes_before + 1
    # when: the CRM answers again
    with crm.state.lock:
        crm.state.scripted.clear()
    # then: a probe closes the breaker, the held plans run on, and every plan completes with one task each
    wait_for(lambda: set(RevenuePlan.objects.filter(pk__in=[plan.id for plan in plans])
                         .values_list("plan_status", flat=True)) == {PlanStatus.COMPLETED}, timeout=90,
             what="every plan to complete")
    assert breaker_state(world) == BreakerState.CLOSED
    moves = breaker_moves(world)
    assert moves[-2:] == [(EventType.BREAKER_HALF_OPENED, machine.COOL_DOWN_OVER),
                          (EventType.BREAKER_CLOSED, machine.PROBE_SUCCEEDED)]
    # every move in between: a cool-down's end, then its probe failing
    assert moves[1:-2] == [(EventType.BREAKER_HALF_OPENED, machine.COOL_DOWN_OVER),
                           (EventType.BREAKER_OPENED, machine.PROBE_FAILED)] * ((len(moves) - 3) // 2)
    assert len(crm.state.tasks_by_key) == PLANS
    for plan in plans:
        kinds = list(PlanLedgerEntry.objects.filter(plan=plan, event_type__in=[
            EventType.PAUSE_LAYER_ADDED, EventType.PAUSE_LAYER_LIFTED]).values_list("event_type", "reason_code"))
        assert (EventType.PAUSE_LAYER_ADDED, "BREAKER_OPEN") in kinds
        assert (EventType.PAUSE_LAYER_LIFTED, PauseKind.BREAKER) in kinds
        assert ledger.verify_ledger(plan_id=plan.id).ok
    assert held_by_breaker(plans) == set()
    assert ledger.verify_ledger(tenant_id=world.tenant.id).ok
