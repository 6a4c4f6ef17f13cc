"""orchestrator/outcome_lock.py: the lock a step's success is recorded under reads the plan's facts and its tenant's
start settings in its own statement — the same answers the separate reads give — and a plan woken meanwhile
has its facts read afresh."""
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import engine, outcome_lock, step_runner
from orchestrator.autonomy.models import ActionTypeAutonomy, AutonomyMode, TenantAutonomy
from orchestrator.autonomy.services import _settings_for, _settings_in
from orchestrator.execution.connectors import routing_table
from orchestrator.execution.models import ActionIntent, ActionRoute, ConnectorConfig, IntentStatus
from plans import selectors
from plans.models import PlanStatus, RevenuePlan
from plans.plan_types import ACTION_TYPES
from tests.bench.bench_orchestrator import make_brief_plans
from tests.factories import SignalFactory, make_plan


def intent_of(plan: RevenuePlan) -> ActionIntent:
    """An attempt's intent as the engine holds it: its plan read with it."""
    intent = ActionIntent(plan_id=plan.id, tenant_id=plan.tenant_id, account_id=plan.account_id)
    intent.plan = plan
    return intent


def active_plan(world, *, next_run_at):
    return make_plan(account=world.account, status=PlanStatus.ACTIVE, next_run_at=next_run_at,
                     activated_at=timezone.now(), plan_type_version=1)


def test_the_lock_reads_what_the_separate_reads_read(world, other_world):
    TenantAutonomy.objects.create(tenant=world.tenant, opted_in_at=timezone.now(), max_per_account_per_day=7)
    ActionTypeAutonomy.objects.create(tenant=world.tenant, action_type="PREP_RENEWAL_BRIEF",
                                      mode=AutonomyMode.AUTO_EXECUTE, max_per_day=4)
    ActionTypeAutonomy.objects.create(tenant=world.tenant, action_type="ESCALATE_SUPPORT_RISK",
                                      mode=AutonomyMode.SHADOW, max_per_day=2)
    ActionRoute.objects.create(tenant=world.tenant, action_type="PREP_RENEWAL_BRIEF", connector="crm")
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm", settings={"timeout_seconds": 3})
    # Another tenant's settings are not this one's.
    TenantAutonomy.objects.create(tenant=other_world.tenant, opted_in_at=None, max_per_account_per_day=1)
    ActionTypeAutonomy.objects.create(tenant=other_world.tenant, action_type="REQUEST_RENEWAL_MEETING",
                                      mode=AutonomyMode.DISABLED, max_per_day=1)
    ActionRoute.objects.create(tenant=other_world.tenant, action_type="REQUEST_RENEWAL_MEETING", connector="internal")
    plan = active_plan(world, next_run_at=timezone.now() + timedelta(minutes=1))
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            locked = outcome_lock.lock_for_outcome(intent_of(plan))
            start = outcome_lock.start_settings(locked)
            facts = selectors.advance_facts(locked)
        assert len(queries) == 1
        assert "FOR UPDATE" in queries[0]["sql"]
        apart = selectors.advance_facts(RevenuePlan.objects.get(pk=plan.pk))
        assert facts == apart
        for action_type in ACTION_TYPES:
            assert _settings_in(start.autonomy, action_type) == {
                **_settings_for(world.tenant.id, action_type),
                "opted_in_at": start.autonomy["tenant"]["opted_in_at"]}  # a JSON timestamp: only its presence counts
            assert (start.routing.connector_for(world.tenant.id, action_type)
                    == routing_table([world.tenant.id]).connector_for(world.tenant.id, action_type))
        assert _settings_in(start.autonomy, "PREP_RENEWAL_BRIEF")["mode"] == AutonomyMode.AUTO_EXECUTE
        assert start.routing.connector_for(world.tenant.id, "PREP_RENEWAL_BRIEF")[0] == "crm"
        assert outcome_lock.start_settings(locked) is None  # taken once, by the advance after the outcome


def test_a_tenant_with_no_settings_reads_none(world):
    plan = active_plan(world, next_run_at=timezone.now() + timedelta(minutes=1))
    with transaction.atomic():
        start = outcome_lock.start_settings(outcome_lock.lock_for_outcome(intent_of(plan)))
        for action_type in ACTION_TYPES:
            assert _settings_in(start.autonomy, action_type) == _settings_for(world.tenant.id, action_type)
            assert (start.routing.connector_for(world.tenant.id, action_type)
                    == routing_table([world.tenant.id]).connector_for(world.tenant.id, action_type))


@pytest.mark.parametrize("woken", [False, True])
def test_a_plan_woken_before_the_lock_has_its_facts_read_afresh(world, woken):
    # A signal that may meet the objective is committed with the plan's wake-up (next_run_at now): the lock's
    # statement may have waited for that commit with a snapshot from before it, so a due plan's facts are not
    # the lock's. A signal recorded after the lock (in this transaction, for the test) tells which were used.
    now = timezone.now()
    plan = active_plan(world, next_run_at=now - timedelta(seconds=1) if woken else now + timedelta(minutes=1))
    with transaction.atomic():
        locked = outcome_lock.lock_for_outcome(intent_of(plan))
        SignalFactory(account=world.account, tenant_id=world.tenant.id, signal_type="RENEWAL_COMMITTED")
        seen = [fact.signal_type for fact in selectors.advance_facts(locked).objective_signals]
        assert seen == (["RENEWAL_COMMITTED"] if woken else [])
        # Used once: the next read is afresh either way.
        assert [fact.signal_type for fact in selectors.advance_facts(locked).objective_signals] == ["RENEWAL_COMMITTED"]


def test_a_chained_step_starts_with_no_read_of_the_settings_apart(world):
    [plan_id] = make_brief_plans(world, 1, steps_of=lambda i: 3)
    follow_up = engine.advance(plan_id, inline=True)  # activates the plan, the first step created claimed
    with CaptureQueriesContext(connection) as queries:
        assert step_runner.run_inline(follow_up, send=lambda keys: None) == engine.FollowUp()
    assert RevenuePlan.objects.get(pk=plan_id).plan_status == PlanStatus.COMPLETED
    assert ActionIntent.objects.filter(plan_id=plan_id, status=IntentStatus.SUCCEEDED).count() == 3
    apart = [query["sql"] for query in queries if "FOR UPDATE" not in query["sql"]]
    # Steps 2 and 3 were started by the advances under the lock of the step before: their tenant's autonomy
    # settings and routes came with that lock.
    assert not [sql for sql in apart if "orchestrator_actionroute" in sql or "orchestrator_actiontypeautonomy" in sql]
