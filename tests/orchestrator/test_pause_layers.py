"""Kill switches and their pause layers through real ticks (DESIGN §3.2): a switch pauses the plans
that try to run, a person's pause stacks on it, and the release (or, for the global switch, the first
tick after REVPLAN_EXECUTION_DISABLED is off) runs again every plan nothing else holds."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import claims, engine
from plans import services
from plans.errors import Conflict
from plans.models import EventType, KillSwitch, PauseKind, PlanLedgerEntry, PlanStatus, RevenuePlan, StepStatus
from plans.services.layers import open_layers
from tests.factories import AccountFactory, make_plan

ESCALATE = "ESCALATE_SUPPORT_RISK"


def tick() -> list:
    """What the beat's tick and the advances it fans out do (orchestrator.tasks), without a broker."""
    due = claims.due_plan_ids()
    for plan_id in due:
        engine.advance_plan(plan_id)
    return due


def due_active_plan(world, *action_types, step_status=StepStatus.PENDING_APPROVAL) -> RevenuePlan:
    """An ACTIVE plan the next tick looks at; its steps wait for a person, so an advance starts nothing."""
    account = AccountFactory(tenant=world.tenant, owner=world.seller)
    return make_plan(account=account, status=PlanStatus.ACTIVE, action_types=action_types or (ESCALATE,),
                     step_status=step_status, activated_at=timezone.now(),
                     next_run_at=timezone.now() - timedelta(seconds=1))


def held_by(plan) -> tuple[str, list[tuple[str, str]]]:
    plan.refresh_from_db()
    return plan.plan_status, [(layer.kind, layer.scope) for layer in open_layers(plan)]


def layer_entries(plan) -> list[tuple[str, str, str]]:
    """The plan's layer entries: (event, kind, actor)."""
    return [(entry.event_type, entry.data["layer"]["kind"], entry.actor)
            for entry in PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq")
            if entry.event_type in (EventType.PAUSE_LAYER_ADDED, EventType.PAUSE_LAYER_LIFTED)]


def test_the_tenant_kill_switch_pauses_plans_and_its_release_runs_on_all_but_the_person_paused(world):
    # given: three running plans, and the tenant's kill switch engaged
    first, second, person_paused = (due_active_plan(world) for _ in range(3))
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident 7")
    # when: the next tick looks at them
    tick()
    # then: each is PAUSED by the switch
    for plan in (first, second, person_paused):
        assert held_by(plan) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, "")])
    # when: a person pauses one of them as well
    services.plan_pause(plan_id=person_paused.id, user=world.seller, reason="waiting for legal")
    assert held_by(person_paused) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, ""), (PauseKind.PERSON, "")])
    # when: the switch is released
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="incident over")
    # then: at once (in the flip's transaction, no tick needed), every plan with no other layer is ACTIVE ...
    assert held_by(first) == held_by(second) == (PlanStatus.ACTIVE, [])
    # ... and the person-paused one stays PAUSED, held by the person alone
    assert held_by(person_paused) == (PlanStatus.PAUSED, [(PauseKind.PERSON, "")])
    # and the next tick advances the two that run again (their steps start from there), not the paused one
    assert set(claims.due_plan_ids()) == {first.id, second.id}
    # ledgered: each layer added and lifted, by whom
    orchestrator, admin, seller = "system:orchestrator", f"user:{world.admin.pk}", f"user:{world.seller.pk}"
    for plan in (first, second):
        assert layer_entries(plan) == [(EventType.PAUSE_LAYER_ADDED, PauseKind.KILL_SWITCH, orchestrator),
                                       (EventType.PAUSE_LAYER_LIFTED, PauseKind.KILL_SWITCH, admin)]
        resumed = PlanLedgerEntry.objects.filter(plan=plan).order_by("-chain_seq").first()
        assert (resumed.event_type, resumed.reason_code) == (EventType.PLAN_RESUMED, "LAST_LAYER_LIFTED")
    assert layer_entries(person_paused) == [(EventType.PAUSE_LAYER_ADDED, PauseKind.KILL_SWITCH, orchestrator),
                                            (EventType.PAUSE_LAYER_ADDED, PauseKind.PERSON, seller),
                                            (EventType.PAUSE_LAYER_LIFTED, PauseKind.KILL_SWITCH, admin)]
    # and the person's resume runs it on
    services.plan_resume(plan_id=person_paused.id, user=world.seller)
    assert held_by(person_paused) == (PlanStatus.ACTIVE, [])


def test_an_action_type_switch_holds_only_its_scope_and_its_release_lifts_only_that(world):
    # given: the escalation's switch stops one plan when its step is about to start ...
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="support outage",
                             action_type=ESCALATE)
    escalating = due_active_plan(world, ESCALATE, step_status=StepStatus.PENDING)
    tick()
    assert held_by(escalating) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, ESCALATE)])
    # ... and then the tenant's switch stops another
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident")
    other = due_active_plan(world)
    tick()
    assert held_by(other) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, "")])
    # when: the escalation's switch is released while the tenant's is still on
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="support is back",
                             action_type=ESCALATE)
    # then: only the escalation's layer is lifted; execution is still off, so the tenant's switch holds that
    # plan now (not a POLICY layer a person would have to resume), and the other plan is untouched
    assert held_by(escalating) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, "")])
    assert held_by(other) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, "")])
    assert [(event, kind) for event, kind, _ in layer_entries(escalating)] == [
        (EventType.PAUSE_LAYER_ADDED, PauseKind.KILL_SWITCH), (EventType.PAUSE_LAYER_LIFTED, PauseKind.KILL_SWITCH),
        (EventType.PAUSE_LAYER_ADDED, PauseKind.KILL_SWITCH)]
    # when: the tenant's switch is released too: both run again
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="over")
    assert held_by(escalating) == held_by(other) == (PlanStatus.ACTIVE, [])


def test_the_global_switch_pauses_plans_and_the_first_tick_after_it_is_off_lifts_it(world, settings):
    # given: two running plans, and the operator turns execution off for the deployment
    running, person_paused = due_active_plan(world), due_active_plan(world)
    settings.REVPLAN_EXECUTION_DISABLED = True
    # when: a tick looks at them
    assert set(tick()) == {running.id, person_paused.id}
    # then: both PAUSED by the global switch, and a person pauses one as well
    assert held_by(running) == held_by(person_paused) == (PlanStatus.PAUSED, [(PauseKind.GLOBAL_KILL_SWITCH, "")])
    services.plan_pause(plan_id=person_paused.id, user=world.seller, reason="waiting for legal")
    # while the setting is on, ticks leave them alone, and a resume is refused (a person cannot lift it)
    assert tick() == []
    with pytest.raises(Conflict) as refused:
        services.plan_resume(plan_id=running.id, user=world.seller)
    assert refused.value.code == services.PAUSE_LAYERS_REMAIN
    # when: the setting is off, and the next tick runs
    settings.REVPLAN_EXECUTION_DISABLED = False
    assert set(tick()) == {running.id, person_paused.id}
    # then: the plan nothing else holds is ACTIVE again, the person-paused one is held by the person alone
    assert held_by(running) == (PlanStatus.ACTIVE, [])
    assert held_by(person_paused) == (PlanStatus.PAUSED, [(PauseKind.PERSON, "")])
    orchestrator = "system:orchestrator"
    assert layer_entries(running) == [(EventType.PAUSE_LAYER_ADDED, PauseKind.GLOBAL_KILL_SWITCH, orchestrator),
                                      (EventType.PAUSE_LAYER_LIFTED, PauseKind.GLOBAL_KILL_SWITCH, orchestrator)]
    # and the tick after that claims neither again for the switch (the person-paused plan waits for a person)
    assert person_paused.id not in tick()


def test_the_tick_costs_one_query_more_for_released_switches_whatever_the_number_of_held_plans(world, settings):
    due_active_plan(world)
    with CaptureQueriesContext(connection) as few:
        claims.due_plan_ids()
    # many PAUSED plans held by layers, a few by the global switch, two by a tenant switch still on
    for kind in [PauseKind.PERSON] * 20 + [PauseKind.GLOBAL_KILL_SWITCH] * 3 + [PauseKind.KILL_SWITCH] * 2:
        plan = due_active_plan(world)
        services.plan_pause_by_policy(plan_id=plan.id, component="tests", kind=kind, reason_code="TEST",
                                      explanation="held for the test")
    KillSwitch.objects.create(tenant=world.tenant, action_type="", engaged=True, updated_by="tests")
    with CaptureQueriesContext(connection) as many:
        assert len(claims.due_plan_ids()) == 3  # the global layers: their switch is off; the tenant's is on
    assert len(few) == len(many) == 4
    # with execution off, the global layers stay; a tenant switch's layer whose switch is off is claimed
    settings.REVPLAN_EXECUTION_DISABLED = True
    KillSwitch.objects.filter(tenant=world.tenant).update(engaged=False)
    with CaptureQueriesContext(connection) as off:
        assert len(claims.due_plan_ids()) == 2
    assert len(off) == 4


def test_a_switch_layer_set_after_its_release_is_lifted_by_the_next_tick_and_by_a_second_release(world):
    # given: the tenant switch engaged and released; then a pause that raced the release commits its
    # layer (an advance that had read the switches before the release)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident 8")
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="fixed")
    late = due_active_plan(world)

    def pause_late(plan):
        services.plan_pause_by_policy(plan_id=plan.id, component="tests", kind=PauseKind.KILL_SWITCH,
                                      reason_code="KILL_SWITCH", explanation="Execution is switched off.")

    pause_late(late)
    assert held_by(late) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, "")])
    # when: the next tick runs, then: the stale layer is lifted and the plan runs again
    assert late.id in tick()
    assert held_by(late) == (PlanStatus.ACTIVE, [])
    assert layer_entries(late)[-1] == (EventType.PAUSE_LAYER_LIFTED, PauseKind.KILL_SWITCH, "system:orchestrator")
    # and a second release (the switch is off already) lifts such a layer at once too, by the person
    other = due_active_plan(world)
    pause_late(other)
    assert held_by(other) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, "")])
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="clear it")
    assert held_by(other) == (PlanStatus.ACTIVE, [])
    assert layer_entries(other)[-1] == (EventType.PAUSE_LAYER_LIFTED, PauseKind.KILL_SWITCH, f"user:{world.admin.pk}")
    # a switch still engaged keeps its layer through the tick
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident 9")
    held = due_active_plan(world)
    tick()
    assert held_by(held) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, "")])
    tick()
    assert held_by(held) == (PlanStatus.PAUSED, [(PauseKind.KILL_SWITCH, "")])
