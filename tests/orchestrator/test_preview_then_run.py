"""The approver's view end to end: a step waits for a person with its preview in the API; once approved,
the orchestrator runs it and what the CRM and the CalDAV server receive is what the preview said."""
import uuid
from datetime import datetime

import caldav
import pytest

from orchestrator import engine, step_runner
from orchestrator.execution.models import ActionIntent, IntentStatus
from plans import services
from plans.models import PlanStatus, StepStatus
from plans.schemas import PlanDraftInput, StepInput
from tests.api.helpers import client_for

pytestmark = pytest.mark.django_db

MEETING, ESCALATE = "REQUEST_RENEWAL_MEETING", "ESCALATE_SUPPORT_RISK"


@pytest.fixture(autouse=True)
def stand_ins_allow_listed(settings):
    settings.ORCHESTRATOR_STEP_RETRY_BASE_SECONDS = 0
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1"]


def active_plan(world, action_type: str, parameters: dict):
    draft = PlanDraftInput(steps=[StepInput(step_id=uuid.uuid4(), action_type=action_type, parameters=parameters)])
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE", draft=draft,
                                 actor=world.seller)
    plan = services.plan_approve(plan_id=plan.id, user=world.admin)
    assert engine.advance_plan(plan.id) == []  # activated; the step waits for a person
    step = plan.steps.get()
    assert step.status == StepStatus.PENDING_APPROVAL
    return plan, step


def previewed(world, plan, step) -> dict:
    body = client_for(world.approver).get(f"/api/v1/plans/{plan.id}/").json()
    [wire_step] = body["steps"]
    assert wire_step["step_id"] == str(step.step_id)
    assert wire_step["preview"]["unavailable"] is False
    return wire_step["preview"]


def approve_and_run(world, plan, step) -> ActionIntent:
    services.step_approve(plan_id=plan.id, step_id=step.step_id, user=world.admin)
    for key in engine.advance_plan(plan.id):
        step_runner.execute_step(key)
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.COMPLETED
    intent = ActionIntent.objects.get(plan=plan, step_id=step.step_id)
    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    return intent


def test_the_crm_task_sent_after_approval_is_the_one_previewed(world, crm, crm_for):
    crm_for(world.tenant)
    plan, step = active_plan(world, ESCALATE, {"subject": "Three P1 tickets this month"})

    preview = previewed(world, plan, step)
    assert crm.state.requests == []
    approve_and_run(world, plan, step)

    [(_, _, _, sent)] = crm.state.posts()
    assert sent == preview["body"]


def test_the_meeting_drafted_after_approval_is_the_one_previewed(world, radicale, calendar_for):
    calendar_for(world.tenant)
    plan, step = active_plan(world, MEETING, {"subject": "Renewal check-in", "start": "2031-05-06T14:00:00+00:00"})

    preview = previewed(world, plan, step)
    intent = approve_and_run(world, plan, step)

    body = preview["body"]
    client = caldav.DAVClient(url=radicale.url, username="revplan", password="")
    event = client.calendar(url=body["calendar_url"]).event_by_uid(body["uid"]).icalendar_component
    assert intent.external_ids["event_uid"] == body["uid"]
    assert (str(event["summary"]), event.decoded("dtstart"), event.decoded("dtend")) == (
        body["summary"], datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"]))
