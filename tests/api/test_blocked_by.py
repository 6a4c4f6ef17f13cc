"""blocked_by on every plan in the API (list and detail): each waiting situation gives its code, what it
waits on, who can act and the verb; the same number of queries for 1, 20 and 200 plans; and `why`
never says "nothing holds it" while blocked_by names something."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import engine
from orchestrator.execution.service import intent_create
from plans import ledger, services
from plans.errors import PolicyRefused
from plans.models import KillSwitch, PauseKind, PlanStatus, PlanStep, StepStatus
from plans.proposals import renewal_defense_draft
from tests.api.helpers import client_for
from tests.factories import AccountFactory, make_plan
from tests.support.stalls import fail_at_the_limit

PLANS = "/api/v1/plans/"
MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"
PEOPLE = ["PLAN_OWNER", "PLAN_APPROVER", "TENANT_ADMIN"]  # the plan's owner, approvers and admins
APPROVERS = ["PLAN_APPROVER", "TENANT_ADMIN"]
ITEM_FIELDS = {"code", "detail", "since", "layer", "step_id", "waits_on", "who_can_act", "verb"}


def new_account(world):
    return AccountFactory(tenant=world.tenant, owner=world.seller)


def active(world, *action_types, **fields):
    return make_plan(account=new_account(world), status=PlanStatus.ACTIVE, activated_at=timezone.now(),
                     action_types=action_types or (MEETING, BRIEF), **fields)


def draft(world, *, signal_types=frozenset()):
    return services.plan_propose(account_id=new_account(world).id, plan_type="RENEWAL_DEFENSE",
                                 draft=renewal_defense_draft(signal_types=set(signal_types)), actor=world.seller)


def held_by(world, kind: PauseKind, *, scope: str = "", reason_code: str = "TEST"):
    plan = active(world)
    services.plan_pause_by_policy(plan_id=plan.id, component="orchestrator", kind=kind, scope=scope,
                                  reason_code=reason_code, explanation=f"Held by {kind} in a test.")
    return plan


# --- one function per waiting situation: the plan, and the blocked_by it must show ----------------------
# Each expectation: (code, waits_on, who_can_act, verb, layer kind or None, about a step?)


def s_draft(world):
    return draft(world), [("AWAITING_PLAN_APPROVAL", "PERSON", APPROVERS, "approve", None, False)]


def s_draft_high_risk(world):
    # HIGH risk: only a tenant admin may approve it (the policy gate's rule)
    return draft(world, signal_types={"SUPPORT_RISK"}), [
        ("AWAITING_PLAN_APPROVAL", "PERSON", ["TENANT_ADMIN"], "approve", None, False)]


def s_draft_refused_by_the_gate(world):
    plan = draft(world, signal_types={"SUPPORT_RISK"})
    with pytest.raises(PolicyRefused):
        services.plan_approve(plan_id=plan.id, user=world.approver)
    return plan, [("AWAITING_PLAN_APPROVAL", "PERSON", ["TENANT_ADMIN"], "approve", None, False),
                  ("GATE_REFUSED", "PERSON", PEOPLE, "edit", None, False)]


def s_approved(world):
    plan = services.plan_approve(plan_id=draft(world).id, user=world.approver)
    return plan, [("AWAITING_ACTIVATION", "SYSTEM", [], None, None, False)]


def s_activation_blocked(world):
    plan = services.plan_approve(plan_id=draft(world).id, user=world.approver)
    KillSwitch.objects.create(tenant=world.tenant, action_type="", engaged=True, reason="incident")
    engine.advance_plan(plan.id)
    return plan, [("ACTIVATION_BLOCKED", "PERSON", PEOPLE, "revise", None, False)]


def s_step_awaiting_approval(world):
    plan = services.plan_approve(plan_id=draft(world).id, user=world.approver)
    engine.advance_plan(plan.id)  # activates it; the meeting (external contact) waits for a person
    assert plan.steps.get(action_type=MEETING).status == StepStatus.PENDING_APPROVAL
    return plan, [("AWAITING_STEP_APPROVAL", "PERSON", PEOPLE, "approve_step", None, True)]


def s_retry_scheduled(world):
    plan = active(world, BRIEF)
    step = plan.steps.get()
    step.attempts, step.next_attempt_at = 1, timezone.now() + timedelta(minutes=5)
    step.save(update_fields=["attempts", "next_attempt_at"])
    ledger.step_retry_scheduled(plan, step=step, attempt=1, error="TRANSIENT: 503",
                                next_attempt_at=step.next_attempt_at, actor="system:orchestrator")
    return plan, [("STEP_RETRY_SCHEDULED", "TIME", [], None, None, True)]


def s_step_running(world):
    plan = active(world, BRIEF)
    step = plan.steps.get()
    intent_create(tenant_id=plan.tenant_id, account_id=plan.account_id, action_type=BRIEF,
                  expires_at=plan.expires_at, approving_policy="test", plan_id=plan.id, step_id=step.step_id,
                  attempt=1)
    PlanStep.objects.filter(pk=step.pk).update(attempts=1)
    return plan, [("STEP_RUNNING", "SYSTEM", [], None, None, True)]


def s_step_failed_on_an_active_plan(world):
    # cannot happen through the services any more; the read still says so (and the next advance pauses it)
    plan = active(world, BRIEF)
    PlanStep.objects.filter(plan=plan).update(status=StepStatus.FAILED, attempts=3, last_error="PERMANENT: 400")
    return plan, [("STEP_FAILED", "PERSON", PEOPLE, "retry_step", None, True)]


def s_paused_by_a_person(world):
    plan = active(world)
    services.plan_pause(plan_id=plan.id, user=world.seller, reason="Customer on holiday.")
    return plan, [("PERSON", "PERSON", PEOPLE, "resume", "PERSON", False)]


def s_retry_limit(world):
    plan = active(world, BRIEF)
    fail_at_the_limit(plan, plan.steps.get())
    return plan, [("RETRY_LIMIT", "PERSON", PEOPLE, "retry_step", "RETRY_LIMIT", True)]


def s_kill_switch(world):
    return held_by(world, PauseKind.KILL_SWITCH), [
        ("KILL_SWITCH", "PERSON", ["TENANT_ADMIN"], "release_kill_switch", "KILL_SWITCH", False)]


def s_global_kill_switch(world):
    return held_by(world, PauseKind.GLOBAL_KILL_SWITCH), [
        ("GLOBAL_KILL_SWITCH", "PERSON", ["OPERATOR"], None, "GLOBAL_KILL_SWITCH", False)]


def s_policy(world):
    return held_by(world, PauseKind.POLICY), [("POLICY", "PERSON", PEOPLE, "resume", "POLICY", False)]


def s_approval_stale(world):
    return held_by(world, PauseKind.APPROVAL_STALE), [
        ("APPROVAL_STALE", "PERSON", APPROVERS, "reapprove", "APPROVAL_STALE", False)]


def s_owner_inactive(world):
    return held_by(world, PauseKind.OWNER_INACTIVE), [
        ("OWNER_INACTIVE", "PERSON", APPROVERS, "transfer_account", "OWNER_INACTIVE", False)]


def s_breaker(world):
    return held_by(world, PauseKind.BREAKER), [("BREAKER", "SYSTEM", [], None, "BREAKER", False)]


def s_two_layers(world):
    plan = held_by(world, PauseKind.KILL_SWITCH)
    services.plan_pause(plan_id=plan.id, user=world.approver)
    return plan, [("KILL_SWITCH", "PERSON", ["TENANT_ADMIN"], "release_kill_switch", "KILL_SWITCH", False),
                  ("PERSON", "PERSON", PEOPLE, "resume", "PERSON", False)]


def s_paused_before_layers(world):
    # a PAUSED plan no layer holds (data from before the layers): its stop reason holds it
    plan = make_plan(account=new_account(world), status=PlanStatus.PAUSED, paused_at=timezone.now(),
                     stop_reason_code="PAUSED_BY_USER", stop_reason_detail="Paused by a person.")
    return plan, [("PAUSED", "PERSON", PEOPLE, "resume", None, False)]


def s_active_and_free_to_move(world):
    return active(world), []


def s_completed(world):
    return make_plan(account=new_account(world), status=PlanStatus.COMPLETED, step_status=StepStatus.DONE), []


SITUATIONS = [value for name, value in sorted(globals().items()) if name.startswith("s_")]


@pytest.mark.parametrize("situation", SITUATIONS, ids=[f.__name__[2:] for f in SITUATIONS])
def test_each_waiting_situation_has_its_code_waits_on_who_can_act_and_verb(world, situation):
    # given
    plan, expected = situation(world)
    api = client_for(world.viewer)
    # when
    detail = api.get(f"{PLANS}{plan.id}/").json()
    listed = {row["plan_id"]: row for row in api.get(PLANS, {"page_size": 200}).json()["results"]}
    why = api.get(f"{PLANS}{plan.id}/why/").json()
    # then: the same on the list as on the detail
    blocked_by = detail["blocked_by"]
    assert listed[str(plan.id)]["blocked_by"] == blocked_by
    assert all(set(item) == ITEM_FIELDS for item in blocked_by)
    assert [(item["code"], item["waits_on"], item["who_can_act"], item["verb"],
             item["layer"]["kind"] if item["layer"] else None, item["step_id"] is not None)
            for item in blocked_by] == expected
    for item in blocked_by:
        assert item["detail"]
        if item["code"] != "STEP_FAILED":  # since its attempt finished: this one was made with no attempt
            assert item["since"] is not None
        if item["layer"]:
            assert set(item["layer"]) == {"kind", "scope", "reason_code", "set_by"}
    # and why never says nothing holds the plan while something does
    answers = [why["stopped"]] * bool(why["stopped"]) + why["waiting"]
    if blocked_by:
        assert answers
        assert "RUNNING" not in [answer["code"] for answer in answers]


def test_a_running_attempt_says_since_when_and_where_it_is(world):
    plan, _ = s_step_running(world)
    [item] = client_for(world.viewer).get(f"{PLANS}{plan.id}/").json()["blocked_by"]
    assert "waiting to run" in item["detail"]
    assert item["since"] is not None


def test_a_retry_limit_item_names_the_failed_step_and_its_layer(world):
    plan, _ = s_retry_limit(world)
    step = plan.steps.get()
    [item] = client_for(world.viewer).get(f"{PLANS}{plan.id}/").json()["blocked_by"]
    assert item["step_id"] == str(step.step_id)
    assert item["layer"] == {"kind": "RETRY_LIMIT", "scope": str(step.step_id), "reason_code": "RETRY_LIMIT_EXCEEDED",
                             "set_by": "system:orchestrator"}
    assert "Lifted by retrying the failed step" in item["detail"]


# --- queries -----------------------------------------------------------------------------------


GROWERS = (s_retry_limit, s_step_running, s_paused_by_a_person, s_step_awaiting_approval, s_retry_scheduled)


def grow(world, count: int) -> None:
    """`count` more ACTIVE or PAUSED plans, each blocked in one of several ways (a RETRY_LIMIT one first)."""
    for index in range(count):
        GROWERS[index % len(GROWERS)](world)


def test_the_active_and_paused_list_carries_blocked_by_in_the_same_queries_for_1_20_and_200_plans(world):
    api = client_for(world.viewer)
    counts, grown = {}, 0
    for total in (1, 20, 200):
        grow(world, total - grown)
        grown = total
        with CaptureQueriesContext(connection) as queries:
            response = api.get(PLANS, {"status": ["ACTIVE", "PAUSED"], "page_size": 200})
        assert response.status_code == 200
        results = response.json()["results"]
        assert len(results) == total
        assert all(row["blocked_by"] for row in results)
        counts[total] = len(queries)
    assert counts[1] == counts[20] == counts[200], counts
