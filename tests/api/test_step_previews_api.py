"""steps[].preview in the plans API: what each step yet to run will send, null once it ran, an unavailable
preview naming the setting when its connector is not configured, and a plan list whose query count does
not grow with its plans."""
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.execution.models import ConnectorConfig
from plans.models import PlanStatus, PlanStep, StepStatus
from tests.api.helpers import client_for
from tests.factories import AccountFactory, make_plan

pytestmark = pytest.mark.django_db

PLANS = "/api/v1/plans/"
MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"
CRM_KEY = "sk-live-api-preview-98765"


@pytest.fixture
def unconfigured_crm(settings):
    """The deployment has a CRM key but no base URL: the CRM cannot be reached, and its key must not show."""
    settings.REVPLAN_CONNECTOR_DEFAULTS = {**settings.REVPLAN_CONNECTOR_DEFAULTS,
                                           "crm": {"base_url": "", "api_key": CRM_KEY}}


def test_the_plan_shows_what_each_open_step_will_send(world, unconfigured_crm):
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar",
                                   settings={"url": "https://caldav.example.com/"})
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF, MEETING, ESCALATE))
    brief, meeting, _ = plan.steps.order_by("sequence")
    PlanStep.objects.filter(pk=brief.pk).update(status=StepStatus.DONE)
    PlanStep.objects.filter(pk=meeting.pk).update(status=StepStatus.PENDING_APPROVAL,
                                                  parameters={"subject": "Renewal check-in"})

    response = client_for(world.viewer).get(f"{PLANS}{plan.id}/")

    assert response.status_code == 200
    by_type = {step["action_type"]: step for step in response.json()["steps"]}
    assert by_type[BRIEF]["preview"] is None  # it ran: its effect is in its execution and the ledger
    meeting_preview = by_type[MEETING]["preview"]
    assert meeting_preview["connector"] == "calendar"
    assert meeting_preview["unavailable"] is False
    assert meeting_preview["body"]["summary"] == "Renewal check-in"
    assert meeting_preview["body"]["calendar"] == f"revplan-{world.tenant.slug}"
    assert meeting_preview["target"] == f"calendar revplan-{world.tenant.slug}"
    escalate_preview = by_type[ESCALATE]["preview"]
    assert escalate_preview["unavailable"] is True
    assert escalate_preview["body"] is None
    assert "REVPLAN_CRM_BASE_URL" in escalate_preview["summary"]
    assert CRM_KEY not in response.content.decode()


def test_a_draft_shows_its_previews_to_the_approver_who_will_approve_it(world):
    plan = make_plan(account=world.account, status=PlanStatus.DRAFT, action_types=(MEETING, BRIEF))

    body = client_for(world.approver).get(f"{PLANS}{plan.id}/").json()

    previews = [step["preview"] for step in body["steps"]]
    assert [preview["connector"] for preview in previews] == ["calendar", "internal"]
    assert previews[1]["body"]["title"] == f"Renewal brief: {world.account.name}"


def test_the_plan_list_costs_the_same_queries_for_one_plan_or_twenty(world, other_world):
    api = client_for(world.viewer)
    make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF, ESCALATE))
    with CaptureQueriesContext(connection) as one:
        first = api.get(PLANS).json()
    for _ in range(19):
        make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE,
                  action_types=(MEETING, BRIEF, ESCALATE))
    make_plan(account=other_world.account, status=PlanStatus.ACTIVE)  # not the viewer's: neither listed nor read

    with CaptureQueriesContext(connection) as twenty:
        body = api.get(PLANS, {"page_size": 50}).json()

    assert first["count"] == 1
    assert len(body["results"]) == 20
    assert all(step["preview"] is not None for plan in body["results"] for step in plan["steps"])
    assert len(twenty) == len(one), json.dumps([query["sql"] for query in twenty.captured_queries])[:4000]


def test_the_schema_documents_the_preview(world):
    schema = client_for(world.viewer).get("/api/schema/", {"format": "json"}).json()

    step = schema["components"]["schemas"]["PlanStepV1"]["properties"]
    assert "preview" in step
    preview = schema["components"]["schemas"]["StepPreview"]
    assert set(preview["properties"]) == {"connector", "summary", "target", "body", "unavailable"}
    assert "without sending" in preview["description"]
