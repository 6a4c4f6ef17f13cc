"""The plan list and detail answer exactly what RevenuePlanV1Serializer, rendered by DRF, would: for plans of
every status, steps with and without an execution in each intent state, pause layers, blocked_by, previews
and none, approvals CURRENT, VOID and STALE, and edits since an approval (revplan.api.output compiles it)."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from orchestrator import engine
from orchestrator.execution.models import ActionIntent, FailureClass, IntentStatus
from orchestrator.execution.service import intent_create
from plans import selectors, services
from plans.errors import PolicyRefused
from plans.models import PauseKind, PlanStatus, PlanStep, Role, StepStatus
from plans.proposals import renewal_defense_draft
from plans.schemas import PlanDraftInput, StepInput, plan_to_schema, plan_values
from revplan.api.output import compiled_many
from revplan.api.plans import plan_sources
from revplan.api.serializers import RevenuePlanV1Serializer
from tests.api.helpers import client_for
from tests.factories import AccountFactory, MembershipFactory, UserFactory, make_plan
from tests.support.stalls import fail_at_the_limit

PLANS = "/api/v1/plans/"
MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


def new_account(world):
    return AccountFactory(tenant=world.tenant, owner=world.seller)


def draft(world, *, account=None, signal_types=frozenset()):
    return services.plan_propose(account_id=(account or new_account(world)).id, plan_type="RENEWAL_DEFENSE",
                                 draft=renewal_defense_draft(signal_types=set(signal_types)), actor=world.seller)


def approved(world, *, account=None):
    return services.plan_approve(plan_id=draft(world, account=account).id, user=world.approver)


def active(world, *action_types):
    return make_plan(account=new_account(world), status=PlanStatus.ACTIVE, activated_at=timezone.now(),
                     action_types=action_types or (MEETING, BRIEF, ESCALATE))


def with_execution(plan, sequence: int, *, attempts: int, **intent_fields) -> ActionIntent:
    """The step's current attempt (`attempts`) has an intent, in the state `intent_fields` set."""
    step = plan.steps.get(sequence=sequence)
    intent = intent_create(tenant_id=plan.tenant_id, account_id=plan.account_id, action_type=step.action_type,
                           expires_at=plan.expires_at, approving_policy="test", plan_id=plan.id,
                           step_id=step.step_id, attempt=attempts)
    ActionIntent.objects.filter(pk=intent.pk).update(attempts=attempts, **intent_fields)
    PlanStep.objects.filter(pk=step.pk).update(attempts=attempts)
    return intent


def varied_plans(world) -> None:
    now = timezone.now()
    draft(world)
    refused = draft(world, signal_types={"SUPPORT_RISK"})  # HIGH risk: the gate refuses an approver
    with pytest.raises(PolicyRefused):
        services.plan_approve(plan_id=refused.id, user=world.approver)
    edited = draft(world)
    services.plan_edit(plan_id=edited.id, user=world.approver, draft=PlanDraftInput(objective="Renew with the sponsor",
                       steps=[StepInput(action_type=BRIEF, parameters={"subject": "For the sponsor"})]))
    approved(world)  # CURRENT
    engine.advance_plan(approved(world).id)  # ACTIVE: the meeting waits for a person's approval
    step_approved = approved(world)
    engine.advance_plan(step_approved.id)
    meeting = step_approved.steps.get(action_type=MEETING)
    services.step_approve(plan_id=step_approved.id, step_id=meeting.step_id, user=world.seller)
    # VOID: approved, activated, revised and edited since
    revised = approved(world)
    engine.advance_plan(revised.id)
    services.plan_revise(plan_id=revised.id, user=world.seller, reason="new sponsor")
    services.plan_edit(plan_id=revised.id, user=world.seller, draft=PlanDraftInput(
        steps=[StepInput(action_type=BRIEF, parameters={"subject": "For the new sponsor"})]))
    # STALE: the account changed hands after the approval
    account = new_account(world)
    engine.advance_plan(approved(world, account=account).id)
    heir = UserFactory()
    MembershipFactory(user=heir, tenant=world.tenant, role=Role.SELLER)
    services.account_transfer(account_id=account.id, new_owner_id=heir.pk, user=world.admin, reason="tests")
    # executions in each intent state, on ACTIVE plans
    running = active(world)
    with_execution(running, 0, attempts=1)
    with_execution(running, 1, attempts=2, status=IntentStatus.EXECUTING, started_at=now)
    finished = active(world)
    with_execution(finished, 0, attempts=2, status=IntentStatus.SUCCEEDED, started_at=now, finished_at=now,
                   connector="internal", external_ids={"record_id": "r-1", "kind": "BRIEF"})
    with_execution(finished, 1, attempts=1, status=IntentStatus.FAILED, failure_class=FailureClass.PERMANENT,
                   failure_reason="The CRM answered HTTP 400.", started_at=now, finished_at=now, connector="crm")
    with_execution(finished, 2, attempts=1, status=IntentStatus.FAILED, failure_class=FailureClass.WORKER_LOST,
                   started_at=now, finished_at=now)
    ended = active(world)
    with_execution(ended, 0, attempts=1, status=IntentStatus.EXPIRED, failure_class=FailureClass.EXPIRED,
                   finished_at=now)
    with_execution(ended, 1, attempts=1, status=IntentStatus.CANCELLED, failure_class=FailureClass.CANCELLED,
                   finished_at=now, compensated_at=now)
    PlanStep.objects.filter(plan=ended, sequence=2).update(attempts=1, next_attempt_at=now + timedelta(minutes=5),
                                                           last_error="TRANSIENT: 503")
    # FAILED with its tries, held by its RETRY_LIMIT layer; and by a person and a kill switch on top
    failed = active(world, BRIEF)
    intent = with_execution(failed, 0, attempts=3, status=IntentStatus.FAILED, failure_class=FailureClass.TRANSIENT,
                            failure_reason="The CRM answered HTTP 503 (server error).", started_at=now,
                            finished_at=now)
    fail_at_the_limit(failed, failed.steps.get(), attempts=intent.attempt)
    services.plan_pause(plan_id=failed.id, user=world.seller, reason="Customer on holiday.")
    services.plan_pause_by_policy(plan_id=failed.id, component="orchestrator", kind=PauseKind.KILL_SWITCH,
                                  scope=BRIEF, reason_code="TEST", explanation="Held by a kill switch in a test.")
    make_plan(account=new_account(world), status=PlanStatus.PAUSED, paused_at=now, stop_reason_code="PAUSED_BY_USER",
              stop_reason_detail="Paused by a person.")  # no layer: from before the layers
    make_plan(account=new_account(world), status=PlanStatus.COMPLETED, step_status=StepStatus.DONE,
              completed_at=now, completion_reason="all steps done")
    services.plan_abort(plan_id=draft(world).id, user=world.seller, reason="Not this quarter.")
    make_plan(account=new_account(world), status=PlanStatus.EXPIRED, expired_at=now, stop_reason_code="EXPIRED",
              stop_reason_detail="It expired.")


def drf_rendered(sources: list[dict]) -> bytes:
    return JSONRenderer().render(RevenuePlanV1Serializer(sources, many=True).data)


@pytest.fixture
def page(world, monkeypatch):
    """The varied plans, read as the list reads them, at one moment (previews and `why` tell the time)."""
    varied_plans(world)
    moment = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: moment)
    return list(selectors.plan_list_for_user(world.viewer))


def test_the_plans_cover_every_shape(page):
    body = json.loads(drf_rendered(plan_sources(page)))
    steps = [step for plan in body for step in plan["steps"]]
    executions = [step["latest_execution"] for step in steps if step["latest_execution"]]
    assert {plan["plan_status"] for plan in body} == set(PlanStatus)
    assert {(e["status"], e["failure_class"]) for e in executions} == {
        ("PENDING", ""), ("EXECUTING", ""), ("SUCCEEDED", ""), ("FAILED", "PERMANENT"), ("FAILED", "WORKER_LOST"),
        ("FAILED", "TRANSIENT"), ("EXPIRED", "EXPIRED"), ("CANCELLED", "CANCELLED")}
    assert any(e["tries"]["count"] == 3 and e["tries"]["last_try"] for e in executions)
    assert any(step["latest_execution"] is None for step in steps)
    assert {plan["approval"]["state"] for plan in body if plan["approval"]} == {"CURRENT", "VOID", "STALE"}
    assert any(plan["approval"] is None for plan in body)
    assert any(step["approval"] for step in steps)
    assert {layer["kind"] for plan in body for layer in plan["pause_layers"]} >= {
        "RETRY_LIMIT", "PERSON", "KILL_SWITCH", "APPROVAL_STALE"}
    assert {item["code"] for plan in body for item in plan["blocked_by"]} >= {
        "AWAITING_PLAN_APPROVAL", "GATE_REFUSED", "AWAITING_ACTIVATION", "AWAITING_STEP_APPROVAL", "STEP_RUNNING",
        "STEP_RETRY_SCHEDULED", "RETRY_LIMIT", "PAUSED"}
    assert any(step["preview"] for step in steps)
    assert any(step["preview"] is None for step in steps)
    assert any(plan["edited_by_since_approval"] for plan in body)
    assert any(plan["stop_reason"] for plan in body)


def test_the_list_answers_what_drf_renders(world, page):
    # when
    results = client_for(world.viewer).get(PLANS, {"page_size": 200}).json()["results"]
    # then
    expected = json.loads(drf_rendered(plan_sources(page)))
    assert len(results) == len(expected) == len(page)
    assert {plan["plan_id"]: plan for plan in results} == {plan["plan_id"]: plan for plan in expected}


def test_the_detail_answers_what_drf_renders(world, page):
    api = client_for(world.viewer)
    for plan in page:
        assert api.get(f"{PLANS}{plan.id}/").json() == json.loads(drf_rendered(plan_sources([plan])))[0]


def test_the_compiled_output_is_drf_s_byte_for_byte_and_drops_undeclared_keys(page):
    # given: what the serializer renders, with keys it does not declare
    sources = plan_sources(page)
    assert all("approval_record" in plan for plan in sources)
    assert all("closed_with_plan" in step for plan in sources for step in plan["steps"])
    # when
    compiled = compiled_many(RevenuePlanV1Serializer)(sources)
    # then: the same bytes, so the same keys in the same order
    assert JSONRenderer().render(compiled) == drf_rendered(sources)
    assert all(list(plan) == list(RevenuePlanV1Serializer().fields) for plan in compiled)


def test_the_plan_values_are_the_validated_schema_s(page):
    for plan in page:
        steps = list(plan.steps.all())
        validated = plan_to_schema(plan, steps).model_dump()
        assert plan_values(plan, steps) == validated
        assert JSONRenderer().render(plan_values(plan, steps)) == JSONRenderer().render(validated)
