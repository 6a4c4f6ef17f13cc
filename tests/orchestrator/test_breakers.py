"""Circuit breakers without workers: the table of moves, the window, the gate and the probe, the plans
held and lifted, a tenant admin's force, and what the hot path costs (no database round trip)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.blocked_by import blocked_by_for
from orchestrator.breakers import machine, services, window
from orchestrator.breakers import plans as breaker_plans
from orchestrator.breakers.config import config_for
from orchestrator.breakers.models import BreakerState, CircuitBreaker
from orchestrator.breakers.plans import BreakerOpen, hold_plan, refusal
from orchestrator.breakers.sweep import sweep
from orchestrator.execution.models import AttemptOutcome
from plans import ledger
from plans import services as plan_services
from plans.errors import NotAllowed
from plans.models import EventType, PauseKind, PlanLedgerEntry, PlanStatus, RevenuePlan
from plans.services import open_layers
from tests.factories import AccountFactory, make_plan

CRM = "crm"
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
OK, TRANSIENT, PERMANENT = AttemptOutcome.SUCCEEDED, AttemptOutcome.TRANSIENT_ERROR, AttemptOutcome.PERMANENT_ERROR


@pytest.fixture(autouse=True)
def small_thresholds(settings):
    settings.REVPLAN_BREAKERS_ENABLED = True
    settings.REVPLAN_BREAKER_DEFAULTS = {"failure_rate": 0.5, "min_tries": 10, "window_seconds": 300,
                                         "cool_down_seconds": 60}
    settings.REVPLAN_BREAKER_CONNECTORS = {"calendar": {"min_tries": 4}}


def tenant_entries(world, event_type=None) -> list[PlanLedgerEntry]:
    rows = PlanLedgerEntry.objects.filter(tenant=world.tenant, plan__isnull=True).order_by("chain_seq")
    return list(rows.filter(event_type=event_type) if event_type else rows)


def breaker(world, connector=CRM) -> CircuitBreaker | None:
    return CircuitBreaker.objects.filter(tenant=world.tenant, connector=connector).first()


def tries(world, outcomes, *, now, connector=CRM) -> list[services.Verdict]:
    return [services.record(world.tenant.id, connector, outcome, holder="p", now=now) for outcome in outcomes]


def active_plans(world, count: int) -> list:
    return [make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE)
            for _ in range(count)]


def trip(world, now):
    verdicts = tries(world, [TRANSIENT] * 10, now=now)
    assert verdicts[-1] == services.Verdict(False, state=OPEN)
    return verdicts


def held(plans) -> None:
    for plan in plans:
        hold_plan(plan_id=plan.id, stopped=refusal(CRM, OPEN, "ESCALATE_SUPPORT_RISK"))
    assert all(p.plan_status == PlanStatus.PAUSED for p in reload(plans))


def reload(plans) -> list:
    for plan in plans:
        plan.refresh_from_db()
    return plans


# --- the table ---------------------------------------------------------------------------------------


AUTOMATIC = {
    (CLOSED, OPEN, machine.FAILURE_RATE_EXCEEDED), (OPEN, HALF_OPEN, machine.COOL_DOWN_OVER),
    (HALF_OPEN, CLOSED, machine.PROBE_SUCCEEDED), (HALF_OPEN, OPEN, machine.PROBE_FAILED),
}
CAUSES = [machine.FAILURE_RATE_EXCEEDED, machine.COOL_DOWN_OVER, machine.PROBE_SUCCEEDED, machine.PROBE_FAILED]


@pytest.mark.parametrize("before", list(BreakerState))
@pytest.mark.parametrize("after", list(BreakerState))
@pytest.mark.parametrize("cause", CAUSES)
def test_every_automatic_move_the_table_has_is_made_and_every_other_is_refused(world, before, after, cause):
    now = timezone.now()
    CircuitBreaker.objects.create(tenant=world.tenant, connector=CRM, state=before, changed_at=now, changed_by="t")
    change = machine.Move(to=after, cause=cause, actor="system:test", explanation="x", evidence={})
    if (before, after, cause) in AUTOMATIC:
        assert machine.move(world.tenant.id, CRM, change, expect=None, now=now).state == after
        [entry] = tenant_entries(world)
        assert (entry.data["from_state"], entry.data["to_state"], entry.reason_code) == (before, after, cause)
    else:
        with pytest.raises(machine.BreakerMoveRefused):
            machine.move(world.tenant.id, CRM, change, expect=None, now=now)
        assert breaker(world).state == before
        assert tenant_entries(world) == []


def test_a_move_expecting_another_state_is_a_no_op(world):
    now = timezone.now()
    change = machine.Move(to=HALF_OPEN, cause=machine.COOL_DOWN_OVER, actor="system:test", explanation="x",
                          evidence={})
    assert machine.move(world.tenant.id, CRM, change, expect=frozenset({OPEN}), now=now) is None
    assert breaker(world).state == CLOSED
    assert tenant_entries(world) == []


# --- the window --------------------------------------------------------------------------------------


def test_the_breaker_opens_at_half_transient_failures_of_at_least_ten_tries(world):
    now = timezone.now()
    # given: 5 successes and 4 transient failures: 9 tries, under the minimum
    verdicts = tries(world, [OK] * 5 + [TRANSIENT] * 4, now=now)
    assert all(verdict.allowed for verdict in verdicts)
    assert breaker(world) is None
    # when: the 10th try fails too (5 of 10)
    [verdict] = tries(world, [TRANSIENT], now=now + timedelta(seconds=1))
    # then: OPEN, in the row and the tenant's chain, with the counts it opened on
    assert verdict == services.Verdict(False, state=OPEN)
    row = breaker(world)
    assert (row.state, row.times_opened, row.reason_code) == (OPEN, 1, machine.FAILURE_RATE_EXCEEDED)
    assert row.retry_at == now + timedelta(seconds=61)
    [entry] = tenant_entries(world, EventType.BREAKER_OPENED)
    assert (entry.actor, entry.data["connector"], entry.data["from_state"]) == ("system:breaker", CRM, CLOSED)
    assert (entry.data["evidence"]["tries"], entry.data["evidence"]["failures"]) == (10, 5)
    assert "5 of the last 10 crm tries" in entry.explanation
    assert ledger.verify_ledger(tenant_id=world.tenant.id).ok
    assert services.gate(world.tenant.id, CRM, holder="any") == services.Verdict(False, state=OPEN)


def test_permanent_errors_are_tries_the_connector_answered_not_failures(world):
    now = timezone.now()
    verdicts = tries(world, [PERMANENT] * 6 + [TRANSIENT] * 4, now=now)
    assert all(verdict.allowed for verdict in verdicts)
    assert breaker(world) is None


def test_failures_older_than_the_window_do_not_count(world):
    start = timezone.now()
    tries(world, [TRANSIENT] * 9, now=start)
    [verdict] = tries(world, [TRANSIENT], now=start + timedelta(seconds=320))
    assert verdict.allowed
    assert services.gate(world.tenant.id, CRM, holder="x").allowed


def test_thresholds_are_per_connector_and_breakers_per_tenant(world, other_world):
    now = timezone.now()
    assert config_for("calendar").min_tries == 4
    assert not tries(world, [TRANSIENT] * 4, now=now, connector="calendar")[-1].allowed
    assert services.gate(world.tenant.id, CRM, holder="x").allowed
    assert services.gate(other_world.tenant.id, "calendar", holder="x").allowed


def test_disabled_breakers_count_nothing_and_let_everything_through(world, settings):
    settings.REVPLAN_BREAKERS_ENABLED = False
    assert all(verdict.allowed for verdict in tries(world, [TRANSIENT] * 30, now=timezone.now()))
    assert breaker(world) is None


# --- plans held, the probe, closing -----------------------------------------------------------------


def test_an_open_breaker_holds_the_plan_with_a_breaker_layer_its_blocked_by_names(world):
    [plan] = active_plans(world, 1)
    hold_plan(plan_id=plan.id, stopped=refusal(CRM, OPEN, "ESCALATE_SUPPORT_RISK"))
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    assert [(layer.kind, layer.scope, layer.reason_code) for layer in open_layers(plan)] == [
        (PauseKind.BREAKER, CRM, "BREAKER_OPEN")]
    [item] = blocked_by_for([plan], now=timezone.now())[plan.id]
    assert (item["code"], item["waits_on"], item["verb"]) == ("BREAKER", "SYSTEM", None)
    assert "crm circuit breaker" in item["detail"]
    # the same cause again is the same layer
    hold_plan(plan_id=plan.id, stopped=refusal(CRM, OPEN, "ESCALATE_SUPPORT_RISK"))
    assert len(open_layers(plan)) == 1


def test_after_the_cool_down_the_longest_held_plan_is_the_single_probe_and_its_success_closes_it(world):
    now = timezone.now()
    trip(world, now)
    plans = active_plans(world, 3)
    held(plans)
    # when: the sweep runs before the cool-down ends: nothing moves
    assert sweep(now=now + timedelta(seconds=30))["half_opened"] == 0
    # when: after it
    result = sweep(now=now + timedelta(seconds=61))
    # then: HALF_OPEN; the first plan held runs again as the probe, the others stay held
    assert result["half_opened"] == 1
    row = breaker(world)
    assert (row.state, row.probe_holder) == (HALF_OPEN, str(plans[0].id))
    assert [p.plan_status for p in reload(plans)] == [PlanStatus.ACTIVE, PlanStatus.PAUSED, PlanStatus.PAUSED]
    assert services.gate(world.tenant.id, CRM, holder=str(plans[1].id)) == services.Verdict(False, state=HALF_OPEN)
    probe = services.gate(world.tenant.id, CRM, holder=str(plans[0].id))
    assert probe == services.Verdict(True, state=HALF_OPEN, probe=True)
    # when: the probe's try succeeds
    after = services.record(world.tenant.id, CRM, OK, holder=str(plans[0].id), probe=True,
                            now=now + timedelta(seconds=62))
    # then: CLOSED; the window starts afresh; the sweep lifts the other plans
    assert after.allowed
    assert breaker(world).state == CLOSED
    assert window.window_counts(world.tenant.id, CRM, config_for(CRM), now=(now + timedelta(seconds=62)).timestamp()
                                ).tries == 0
    assert services.gate(world.tenant.id, CRM, holder="anyone").allowed
    assert sweep(now=now + timedelta(seconds=63))["lifted"] == 2
    assert {p.plan_status for p in reload(plans)} == {PlanStatus.ACTIVE}
    assert [entry.event_type for entry in tenant_entries(world)] == [
        EventType.BREAKER_OPENED, EventType.BREAKER_HALF_OPENED, EventType.BREAKER_CLOSED]
    lifted = PlanLedgerEntry.objects.filter(plan=plans[1], event_type=EventType.PAUSE_LAYER_LIFTED).get()
    assert "crm circuit breaker is closed" in lifted.explanation
    assert ledger.verify_ledger(tenant_id=world.tenant.id).ok


def test_a_failed_probe_opens_it_again_for_another_cool_down(world):
    now = timezone.now()
    trip(world, now)
    sweep(now=now + timedelta(seconds=61))
    assert services.gate(world.tenant.id, CRM, holder="first").probe  # no plan held: the first to come
    assert not services.gate(world.tenant.id, CRM, holder="second").allowed
    verdict = services.record(world.tenant.id, CRM, TRANSIENT, holder="first", probe=True, error="HTTP 503.",
                              now=now + timedelta(seconds=62))
    assert verdict == services.Verdict(False, state=OPEN)
    row = breaker(world)
    assert (row.state, row.reason_code, row.times_opened) == (OPEN, machine.PROBE_FAILED, 2)
    assert row.retry_at == now + timedelta(seconds=122)
    assert [entry.reason_code for entry in tenant_entries(world, EventType.BREAKER_OPENED)] == [
        machine.FAILURE_RATE_EXCEEDED, machine.PROBE_FAILED]


def test_a_lost_probe_lets_the_next_held_plan_through(world):
    now = timezone.now()
    trip(world, now)
    plans = active_plans(world, 2)
    held(plans)
    sweep(now=now + timedelta(seconds=61))
    window.set_probe(world.tenant.id, CRM, "")  # the probe's time ran out
    assert sweep(now=now + timedelta(seconds=70))["probes_released"] == 1
    assert window.probe_holder(world.tenant.id, CRM) == str(plans[1].id)
    assert {p.plan_status for p in reload(plans)} == {PlanStatus.ACTIVE}


# --- a tenant admin's force ---------------------------------------------------------------------------


def test_only_a_tenant_admin_forces_a_breaker_and_a_refusal_changes_nothing(world):
    for user in (world.viewer, world.seller, world.approver):
        with pytest.raises(NotAllowed):
            services.breaker_force(tenant_id=world.tenant.id, connector=CRM, state=OPEN, user=user, reason="x")
    assert breaker(world) is None
    assert tenant_entries(world) == []


def test_forced_open_stays_open_past_the_cool_down_until_forced_closed_which_runs_the_plans_on(world):
    now = timezone.now()
    [plan] = active_plans(world, 1)
    services.breaker_force(tenant_id=world.tenant.id, connector=CRM, state=OPEN, user=world.admin,
                           reason="The CRM vendor announced maintenance", now=now)
    assert not services.gate(world.tenant.id, CRM, holder=str(plan.id)).allowed
    hold_plan(plan_id=plan.id, stopped=refusal(CRM, OPEN, "ESCALATE_SUPPORT_RISK"))
    assert sweep(now=now + timedelta(days=1))["half_opened"] == 0
    assert (breaker(world).state, breaker(world).forced) == (OPEN, True)
    services.breaker_force(tenant_id=world.tenant.id, connector=CRM, state=CLOSED, user=world.admin,
                           reason="Maintenance is over")
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ACTIVE
    assert (breaker(world).state, breaker(world).forced) == (CLOSED, False)
    forced = tenant_entries(world, EventType.BREAKER_FORCED)
    assert [(entry.actor, entry.data["to_state"], entry.data["evidence"]["reason"]) for entry in forced] == [
        (f"user:{world.admin.pk}", OPEN, "The CRM vendor announced maintenance"),
        (f"user:{world.admin.pk}", CLOSED, "Maintenance is over")]
    # forcing it into the state it is in writes nothing
    services.breaker_force(tenant_id=world.tenant.id, connector=CRM, state=CLOSED, user=world.admin, reason="again")
    assert len(tenant_entries(world, EventType.BREAKER_FORCED)) == 2


# --- the hot path -------------------------------------------------------------------------------------


def test_a_closed_breaker_costs_a_step_no_database_round_trip(world, django_assert_num_queries):
    services.gate(world.tenant.id, CRM, holder="warm")  # the first gate reads the row (none) and caches it
    with django_assert_num_queries(0):
        assert services.gate(world.tenant.id, CRM, holder="p").allowed
        assert services.record(world.tenant.id, CRM, OK, holder="p").allowed
        assert services.record(world.tenant.id, CRM, TRANSIENT, holder="p").allowed


def test_breaker_open_is_a_domain_error_naming_the_connector():
    stopped = refusal(CRM, HALF_OPEN, "ESCALATE_SUPPORT_RISK")
    assert isinstance(stopped, BreakerOpen)
    assert (stopped.code, stopped.connector, stopped.state) == ("BREAKER_OPEN", CRM, HALF_OPEN)
    assert "another step is its probe" in stopped.detail


def test_every_move_is_a_metric_once_committed(world, django_capture_on_commit_callbacks):
    from orchestrator.metrics import render

    with django_capture_on_commit_callbacks(execute=True):
        trip(world, timezone.now())
    text = render().decode()
    assert f'revplan_breaker_state{{connector="crm",tenant_id="{world.tenant.id}"}} 2.0' in text
    assert 'revplan_breaker_transitions_total{cause="FAILURE_RATE_EXCEEDED",connector="crm",to_state="OPEN"}' in text


def test_hand_back_returns_a_claimed_intent_to_pending_with_the_tries_it_made(world):
    import uuid

    from orchestrator.breakers.plans import hand_back
    from orchestrator.execution.models import ActionIntent, IntentStatus
    from orchestrator.execution.service import intent_create

    intent = intent_create(tenant_id=world.tenant.id, account_id=world.account.id,
                           action_type="ESCALATE_SUPPORT_RISK", expires_at=timezone.now() + timedelta(hours=1),
                           approved_by=world.approver)
    token = uuid.uuid4()
    ActionIntent.objects.filter(pk=intent.pk).update(status=IntentStatus.EXECUTING, lease_token=token, attempts=2)
    assert not hand_back(intent.pk, uuid.uuid4(), tries_made=1)  # not the claim's holder
    assert hand_back(intent.pk, token, tries_made=1)
    intent.refresh_from_db()
    assert (intent.status, intent.lease_token, intent.attempts) == (IntentStatus.PENDING, None, 1)


def test_the_internal_connector_has_no_breaker_and_costs_nothing(world, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert all(verdict.allowed for verdict in tries(world, [TRANSIENT] * 30, now=timezone.now(),
                                                         connector="internal"))
        assert services.gate(world.tenant.id, "internal", holder="p") == services.ALLOWED
    assert window.window_counts(world.tenant.id, "internal", config_for("internal"), now=timezone.now().timestamp()
                                ).tries == 0


def test_the_sweep_task_runs_one_sweep_at_a_time(world):
    from orchestrator.breakers.tasks import breakers_sweep
    from orchestrator.locks import held_lock

    now = timezone.now() - timedelta(minutes=5)
    trip(world, now)  # its cool-down is over
    with held_lock("breakers-sweep", ttl_seconds=30):
        assert breakers_sweep() == {}
    assert breaker(world).state == OPEN
    assert breakers_sweep()["half_opened"] == 1
    assert breaker(world).state == HALF_OPEN


def test_with_redis_down_steps_go_through_but_a_breaker_forced_open_stays_open(world, settings):
    from orchestrator.locks import redis_client

    services.breaker_force(tenant_id=world.tenant.id, connector="calendar", state=OPEN, user=world.admin,
                           reason="calendar maintenance")
    original = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    redis_client.cache_clear()
    try:
        assert services.gate(world.tenant.id, CRM, holder="p").allowed
        assert services.record(world.tenant.id, CRM, TRANSIENT, holder="p").allowed
        assert not services.gate(world.tenant.id, "calendar", holder="p").allowed
    finally:
        settings.REDIS_URL = original
        redis_client.cache_clear()


def test_the_probe_is_the_longest_held_plan_that_nothing_else_holds(world):
    now = timezone.now()
    trip(world, now)
    plans = active_plans(world, 2)
    held(plans)
    plan_services.plan_pause(plan_id=plans[0].id, user=world.admin, reason="on hold for the QBR")
    sweep(now=now + timedelta(seconds=61))
    assert breaker(world).probe_holder == str(plans[1].id)
    assert [p.plan_status for p in reload(plans)] == [PlanStatus.PAUSED, PlanStatus.ACTIVE]


def test_a_forced_close_lifts_a_batch_at_once_and_the_sweep_the_rest(world, monkeypatch):
    """A request lifts at most LIFT_BATCH held plans (each in its own transaction); the sweep goes on."""
    monkeypatch.setattr(breaker_plans, "LIFT_BATCH", 2)
    plans = active_plans(world, 3)
    services.breaker_force(tenant_id=world.tenant.id, connector=CRM, state=OPEN, user=world.admin, reason="outage")
    held(plans)
    services.breaker_force(tenant_id=world.tenant.id, connector=CRM, state=CLOSED, user=world.admin, reason="over")
    assert len(breaker_plans.held_plan_ids(world.tenant.id, CRM)) == 1
    assert sweep()["lifted"] == 1
    assert breaker_plans.held_plan_ids(world.tenant.id, CRM) == []
    assert {plan.plan_status for plan in RevenuePlan.objects.filter(id__in=[plan.id for plan in plans])} == {
        PlanStatus.ACTIVE}
