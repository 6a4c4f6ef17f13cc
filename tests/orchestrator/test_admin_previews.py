"""The plan page in the approvers' console: each open step shows what it will send (its preview), the step
table names each step's dependencies, and "Now" says what the proposal looked at in sentences — no dict
or list printed raw."""
import re
import uuid
from html import unescape

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from plans import services
from plans.models import PlanStep, StepStatus
from plans.proposals import renewal_defense_draft
from plans.schemas import PlanDraftInput, StepInput

pytestmark = pytest.mark.django_db

CRM_KEY = "sk-live-console-preview-4242"
INPUTS = {
    "proposer": "rules",
    "dropped_action_types": [],
    "plan_type": "RENEWAL_DEFENSE",
    "account_name": "Acme Renewals",
    "renewal_date": "2027-01-15",
    "days_to_renewal": 45,
    "posture": {"health": "watch", "arr": 120000},
    "signal_types": ["SUPPORT_RISK"],
    "recent_signals": [{"signal_type": "SUPPORT_RISK", "observed_at": "2026-11-20T10:00:00+00:00"},
                       {"signal_type": "SUPPORT_RISK", "observed_at": "2026-11-21T09:15:00+00:00"}],
    "previous_plans": [{"plan_status": "COMPLETED", "completion_reason": "objective_met"},
                       {"plan_status": "ABORTED", "completion_reason": ""}],
}


def console(user) -> Client:
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="plans", codename__startswith="view_"))
    client = Client()
    client.force_login(user)
    return client


def section(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}"')
    return page[start:page.index("</fieldset>", start)]


@pytest.fixture
def proposed(world, crm_for, settings):
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1"]  # the stand-in CRM's http://127.0.0.1 endpoint
    crm_for(world.tenant, api_key=CRM_KEY)
    return services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=renewal_defense_draft(signal_types={"SUPPORT_RISK"}), actor=world.seller,
                                 trigger="api", inputs_summary=INPUTS)


def page_of(world, plan) -> str:
    response = console(world.approver).get(reverse("admin:plans_revenueplan_change", args=[plan.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_now_says_what_the_proposal_looked_at_in_sentences(world, proposed):
    now = section(page_of(world, proposed), "plan-now")

    text = unescape(re.sub(r"<[^>]+>", " ", now))
    assert "Posture: ARR 120k, health watch." in text
    assert "Previous plans of this type: 2 (1 completed, 1 aborted)." in text
    assert "Recent signals: 2 (2 SUPPORT_RISK), the latest observed 2026-11-21 09:15 UTC." in text
    assert "Renewal date: 2027-01-15 (in 45 days)." in text
    assert "Signal types seen: SUPPORT_RISK." in text
    for raw in ("{", "}", "[", "]", "'", "&#x27;", "None"):
        assert raw not in now, f"{raw!r} printed raw in Now: {text}"


def test_the_step_table_names_each_steps_dependencies(world, proposed):
    page = page_of(world, proposed)

    dependencies = [unescape(cell).strip() for cell in re.findall(r'class="step-dependencies">(.*?)</td>', page)]
    assert dependencies == ["—", "1 (REQUEST_RENEWAL_MEETING)", "2 (PREP_RENEWAL_BRIEF)"]
    assert not any(str(step.step_id) in cell for step in proposed.steps.all() for cell in dependencies)


def test_each_open_step_shows_what_it_will_send_and_no_secret(world, proposed, crm):
    meeting = proposed.steps.get(action_type="REQUEST_RENEWAL_MEETING")
    PlanStep.objects.filter(pk=meeting.pk).update(parameters={"subject": "Renewal check-in with Acme"})

    steps = section(page_of(world, proposed), "plan-steps")

    previews = re.findall(r'class="step-preview[^"]*" data-connector="(\w*)"', steps)
    assert previews == ["calendar", "internal", "crm"]
    text = unescape(steps)
    assert 'Drafts the tentative meeting "Renewal check-in with Acme"' in text
    assert f"Renewal brief: {world.account.name}" in text
    assert '"account_external_id": "' + world.account.external_id + '"' in text  # the CRM body, pretty JSON
    assert CRM_KEY not in text
    assert crm.state.requests == []


def test_a_finished_step_shows_no_preview_and_an_unconfigured_one_says_why(world, proposed, settings):
    settings.REVPLAN_CONNECTOR_DEFAULTS = {**settings.REVPLAN_CONNECTOR_DEFAULTS,
                                           "calendar": {"url": "", "password": "caldav-secret-777"}}
    brief = proposed.steps.get(action_type="PREP_RENEWAL_BRIEF")
    PlanStep.objects.filter(pk=brief.pk).update(status=StepStatus.DONE)

    steps = unescape(section(page_of(world, proposed), "plan-steps"))

    assert re.findall(r'data-connector="(\w*)"', steps) == ["calendar", "crm"]
    assert "No preview: The calendar connector is not configured: set REVPLAN_CALDAV_URL" in re.sub(
        r"<[^>]+>", "", steps)
    assert "caldav-secret-777" not in steps


def test_what_changed_since_the_approval_is_in_words_too(world):
    meeting_id, brief_id = uuid.uuid4(), uuid.uuid4()

    def steps(**parameters):
        return [StepInput(step_id=meeting_id, action_type="REQUEST_RENEWAL_MEETING", parameters=parameters),
                StepInput(step_id=brief_id, action_type="PREP_RENEWAL_BRIEF", depends_on=[meeting_id])]

    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE", actor=world.seller,
                                 draft=PlanDraftInput(steps=steps()))
    services.plan_approve(plan_id=plan.id, user=world.approver)
    services.plan_revise(plan_id=plan.id, user=world.seller)
    services.plan_edit(plan_id=plan.id, user=world.seller, draft=PlanDraftInput(
        steps=steps(subject="Renewal check-in", duration_minutes=45)))

    now = section(page_of(world, plan), "plan-now")

    changed = unescape(re.sub(r"<[^>]+>", "", now.split('id="plan-changed-since"')[1].split("</ul>")[0]))
    assert "step 1 (REQUEST_RENEWAL_MEETING): parameters: none → duration minutes 45, subject Renewal check-in" in (
        changed)
    for raw in ("{", "[", "'", "&#x27;", str(meeting_id), str(brief_id)):
        assert raw not in now
