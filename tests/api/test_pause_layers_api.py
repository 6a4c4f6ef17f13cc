"""Pause layers in the API: each plan's open layers (list and detail) in a constant number of queries,
`why` naming each layer and who lifts it, and the kill switch scenario of issue 14 end to end."""
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import claims, engine
from plans import services, why
from plans.models import PauseKind, PauseLayer, PlanStatus, RevenuePlan, StepStatus
from tests.api.helpers import client_for
from tests.factories import AccountFactory, make_plan

PLANS = "/api/v1/plans/"
SWITCHES = "/api/v1/kill-switches/"
LAYER_FIELDS = {"kind", "scope", "reason_code", "explanation", "set_by", "set_at", "lifted_by", "lifted_by_verb"}


def running(world):
    """An ACTIVE plan the next tick looks at; its steps wait for a person, so an advance starts nothing."""
    return make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE,
                     step_status=StepStatus.PENDING_APPROVAL, activated_at=timezone.now(),
                     next_run_at=timezone.now() - timedelta(seconds=1))


def tick() -> None:
    for plan_id in claims.due_plan_ids():
        engine.advance_plan(plan_id)


def layers_by_plan(api) -> dict[str, list[tuple[str, str]]]:
    results = api.get(PLANS, {"page_size": 100}).json()["results"]
    return {plan["plan_id"]: [(layer["kind"], layer["scope"]) for layer in plan["pause_layers"]] for plan in results}


def test_the_kill_switch_scenario_through_the_api(world):
    # given: three running plans; a tenant admin engages the tenant's kill switch, and a tick runs
    plans = [str(running(world).id) for _ in range(3)]
    admin, owner = client_for(world.admin), client_for(world.seller)
    assert admin.post(SWITCHES, {"engaged": True, "reason": "incident 7"}, format="json").status_code == 200
    tick()
    assert layers_by_plan(owner) == {plan_id: [(PauseKind.KILL_SWITCH, "")] for plan_id in plans}
    # when: the owner pauses one of them as well
    paused = owner.post(f"{PLANS}{plans[0]}/pause/", {"reason": "waiting for legal"}, format="json")
    assert [layer["kind"] for layer in paused.json()["pause_layers"]] == [PauseKind.KILL_SWITCH, PauseKind.PERSON]
    # a resume cannot lift the switch's layer: 409, naming it and who lifts it; nothing changes
    refused = owner.post(f"{PLANS}{plans[1]}/resume/", {}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "PAUSE_LAYERS_REMAIN")
    assert [reason["code"] for reason in refused.json()["reasons"]] == [PauseKind.KILL_SWITCH]
    assert "a tenant admin releasing the kill switch" in refused.json()["reasons"][0]["detail"]
    # when: the switch is released
    assert admin.post(SWITCHES, {"engaged": False, "reason": "over"}, format="json").status_code == 200
    # then: at once, the two held by nothing else are ACTIVE; the person-paused one is held by the person alone
    statuses = {plan["plan_id"]: plan["plan_status"] for plan in owner.get(PLANS).json()["results"]}
    assert statuses == {plans[0]: PlanStatus.PAUSED, plans[1]: PlanStatus.ACTIVE, plans[2]: PlanStatus.ACTIVE}
    assert layers_by_plan(owner) == {plans[0]: [(PauseKind.PERSON, "")], plans[1]: [], plans[2]: []}
    layer = owner.get(f"{PLANS}{plans[0]}/").json()["pause_layers"][0]
    assert set(layer) == LAYER_FIELDS
    assert (layer["reason_code"], layer["explanation"], layer["set_by"], layer["lifted_by_verb"]) == (
        "PAUSED_BY_USER", "waiting for legal", f"user:{world.seller.pk}", "resume")


def test_why_names_each_open_layer_and_who_lifts_it(world):
    # given: a plan held by the tenant's kill switch and by its owner
    plan = running(world)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident")
    tick()
    services.plan_pause(plan_id=plan.id, user=world.seller, reason="waiting for legal")

    why = client_for(world.viewer).get(f"{PLANS}{plan.id}/why/").json()

    assert [answer["code"] for answer in why["held"]] == [PauseKind.KILL_SWITCH, PauseKind.PERSON]
    assert "Lifted by a tenant admin releasing the kill switch." in why["held"][0]["sentence"]
    assert "Lifted by a person's resume" in why["held"][1]["sentence"]
    stopped = why["stopped"]["sentence"]
    assert "It is held by KILL_SWITCH, set by system:orchestrator" in stopped
    assert "; lifted by a tenant admin releasing the kill switch; PERSON, set by " in stopped
    assert stopped.endswith("It runs again when no layer is left.")
    assert all("nothing" not in answer["sentence"] for answer in [why["stopped"], *why["waiting"], *why["held"]])


def test_the_plan_list_costs_the_same_queries_whatever_the_number_of_layers(world):
    api = client_for(world.viewer)

    def held_plan(*kinds):
        plan = running(world)
        for kind in kinds:
            services.plan_pause_by_policy(plan_id=plan.id, component="tests", kind=kind, reason_code="TEST",
                                          explanation=f"Held by {kind}.")

    held_plan(PauseKind.PERSON)
    with CaptureQueriesContext(connection) as one:
        assert api.get(PLANS, {"status": "PAUSED"}).status_code == 200
    for _ in range(20):
        held_plan(PauseKind.KILL_SWITCH, PauseKind.RETRY_LIMIT, PauseKind.PERSON)
    with CaptureQueriesContext(connection) as many:
        body = api.get(PLANS, {"status": "PAUSED", "page_size": 50}).json()
    assert len(body["results"]) == 21
    assert sorted(len(plan["pause_layers"]) for plan in body["results"]) == [1] + [3] * 20
    assert len(many) == len(one)


def test_why_never_says_nothing_holds_a_plan_while_a_layer_is_open(world):
    # given: an ACTIVE plan no step of which waits, held by a layer all the same (as a row could be
    # between a lift and its move); and the same plan without it
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    free = why.plan_why(RevenuePlan.objects.get(pk=plan.pk), now=timezone.now())
    assert [answer.code for answer in free.waiting] == ["RUNNING"]
    PauseLayer.objects.create(plan=plan, kind=PauseKind.POLICY, reason_code="TEST", explanation="Held for a test.",
                              set_by="system:tests", set_at=timezone.now())

    held = why.plan_why(RevenuePlan.objects.get(pk=plan.pk), now=timezone.now())

    assert [answer.code for answer in held.held] == [PauseKind.POLICY]
    assert held.waiting == []
    assert "Lifted by a person's resume" in held.held[0].sentence
