"""Step previews (plans.previews): what a connector describes before a step runs is what it then sends.

Each check describes a step, runs the step's intent (made from the step as the engine makes it) through
the real ExecutionService, and compares the preview with what arrived: the request body the stand-in CRM
recorded, the event read back from Radicale, the internal record written. Describing sends nothing,
writes nothing, shows no secret, and costs the same reads for one step as for thirty.
"""
import json
from datetime import UTC, datetime, timedelta

import caldav
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.execution.intents import step_intent_fields
from orchestrator.execution.models import (
    ActionIntent,
    ActionRoute,
    ConnectorConfig,
    ExecutionAttempt,
    IntentStatus,
    InternalRecord,
)
from orchestrator.execution.service import intent_create
from plans.models import AccountSignal, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.previews import previews_for
from tests.factories import AccountFactory, SignalFactory, make_plan

pytestmark = pytest.mark.django_db

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"
CRM_KEY = "sk-live-preview-0123456789"
CALDAV_PASSWORD = "caldav-preview-secret-42"
PREVIEW_KEYS = {"connector", "summary", "target", "body", "unavailable"}


def step_of(world, action_type, *, parameters=None, account=None) -> PlanStep:
    plan = make_plan(account=account or world.account, status=PlanStatus.ACTIVE, action_types=(action_type,))
    step = plan.steps.get()
    if parameters is not None:
        PlanStep.objects.filter(pk=step.pk).update(parameters=parameters)
        step.refresh_from_db()
    return step


def preview_of(step: PlanStep) -> dict:
    preview = previews_for([step])[step.step_id]
    assert set(preview) == PREVIEW_KEYS
    return preview


def run(service, step: PlanStep, world) -> ActionIntent:
    """The step's first attempt, its intent made from the step as the engine makes it, executed."""
    intent = intent_create(**step_intent_fields(step.plan, step), approved_by=world.admin, attempt=1)
    return service.execute(intent.id)


# --- each connector: the preview is what is sent ------------------------------------------------


def test_the_crm_preview_is_the_request_body_the_crm_receives(service, crm, crm_for, world):
    crm_for(world.tenant, api_key=CRM_KEY)
    step = step_of(world, ESCALATE, parameters={"subject": "Call the support lead", "ticket": "T-42"})

    preview = preview_of(step)
    assert crm.state.requests == []  # describing sent nothing

    intent = run(service, step, world)
    assert intent.status == IntentStatus.SUCCEEDED
    [(method, path, headers, body)] = crm.state.posts()
    assert (method, path) == ("POST", "/tasks")
    assert body == preview["body"]
    assert preview["body"]["subject"] == "Call the support lead"
    assert preview["target"] == f"POST {crm.base_url}/tasks"
    assert (preview["connector"], preview["unavailable"]) == ("crm", False)
    assert headers["Idempotency-Key"] == intent.effect_key
    assert "Call the support lead" in preview["summary"]
    assert CRM_KEY not in json.dumps(preview)


def test_the_deployments_crm_is_not_named_to_a_tenant(settings, world):
    settings.REVPLAN_CONNECTOR_DEFAULTS = {**settings.REVPLAN_CONNECTOR_DEFAULTS, "crm": {
        "base_url": "http://crm.operator.internal:8080", "api_key": CRM_KEY}}
    step = step_of(world, ESCALATE)

    preview = preview_of(step)

    assert preview["target"] == "POST /tasks on the deployment's CRM"
    assert "operator.internal" not in json.dumps(preview)
    assert CRM_KEY not in json.dumps(preview)


def test_the_deployments_calendar_server_is_not_named_to_a_tenant(settings, world):
    settings.REVPLAN_CONNECTOR_DEFAULTS = {**settings.REVPLAN_CONNECTOR_DEFAULTS, "calendar": {
        "url": "http://caldav.operator.internal:5232/", "username": "svc-revplan", "password": CALDAV_PASSWORD}}
    step = step_of(world, MEETING)

    preview = preview_of(step)

    assert not preview["unavailable"], preview
    assert preview["body"]["calendar"] == f"revplan-{world.tenant.slug}"
    assert "calendar_url" not in preview["body"]
    assert "operator.internal" not in json.dumps(preview)
    assert "svc-revplan" not in json.dumps(preview)


def vevent(radicale, calendar_url: str, uid: str):
    client = caldav.DAVClient(url=radicale.url, username="revplan", password="")
    return client.calendar(url=calendar_url).event_by_uid(uid).icalendar_component


@pytest.mark.parametrize("parameters", [
    {"subject": "Renewal check-in", "start": "2031-03-04T09:30:00+00:00", "duration_minutes": 45},
    {},  # no start: two weekdays after it runs, at 15:00 UTC; the default subject
], ids=["given-start", "default-start"])
def test_the_calendar_preview_is_the_event_radicale_holds(service, radicale, world, parameters):
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar", settings={
        "url": radicale.url, "password": CALDAV_PASSWORD, "timeout_seconds": 5})
    step = step_of(world, MEETING, parameters=parameters)

    preview = preview_of(step)
    intent = run(service, step, world)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    body = preview["body"]
    assert body["calendar_url"] == intent.external_ids["calendar_url"]
    assert body["calendar"] == f"revplan-{world.tenant.slug}"
    assert body["uid"] == intent.external_ids["event_uid"]
    event = vevent(radicale, intent.external_ids["calendar_url"], body["uid"])
    assert str(event["summary"]) == body["summary"]
    assert event.decoded("dtstart") == datetime.fromisoformat(body["start"])
    assert event.decoded("dtend") == datetime.fromisoformat(body["end"])
    assert str(event["description"]) == body["description"]
    assert str(event["status"]) == body["status"] == "TENTATIVE"
    assert "attendee" not in event
    assert body["summary"] in preview["summary"]
    assert f"calendar revplan-{world.tenant.slug}" in preview["summary"]
    assert CALDAV_PASSWORD not in json.dumps(preview)
    if parameters:
        assert body["summary"] == "Renewal check-in"
        assert datetime.fromisoformat(body["end"]) - datetime.fromisoformat(body["start"]) == timedelta(minutes=45)
        assert "Tue 04 Mar 2031, 09:30 to 10:15 UTC" in preview["summary"]
    else:
        assert datetime.fromisoformat(body["start"]).astimezone(UTC).hour == 15
        assert "no start was given" in preview["summary"]


def test_the_brief_preview_is_the_record_written(service, world):
    for days_ago, signal_type in ((3, "SUPPORT_RISK"), (1, "NO_RESPONSE")):
        SignalFactory(account=world.account, signal_type=signal_type, payload={"note": signal_type.lower()},
                             observed_at=datetime.now(UTC) - timedelta(days=days_ago))
    step = step_of(world, BRIEF)

    preview = preview_of(step)
    intent = run(service, step, world)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    record = InternalRecord.objects.get(tenant=world.tenant, effect_key=intent.effect_key)
    assert preview["body"] == {"kind": record.kind, "title": record.title, "body": record.body}
    assert [signal["signal_type"] for signal in record.body["recent_signals"]] == ["NO_RESPONSE", "SUPPORT_RISK"]
    assert (preview["connector"], preview["body"]["kind"]) == ("internal", "BRIEF")
    assert record.title in preview["summary"]
    assert "2 latest signals" in preview["summary"]


def test_a_task_routed_to_the_internal_connector_previews_the_task_it_writes(service, world):
    ActionRoute.objects.create(tenant=world.tenant, action_type=ESCALATE, connector="internal")
    step = step_of(world, ESCALATE, parameters={"reason": "three P1 tickets"})

    preview = preview_of(step)
    intent = run(service, step, world)

    record = InternalRecord.objects.get(tenant=world.tenant, effect_key=intent.effect_key)
    assert preview["body"] == {"kind": "TASK", "title": record.title, "body": {"parameters": {"reason": "three P1 "
                                                                                                         "tickets"}}}
    assert preview["body"]["body"] == record.body


# --- when a step cannot be described ------------------------------------------------------------


@pytest.mark.parametrize(("action_type", "connector", "defaults", "setting", "secret"), [
    (ESCALATE, "crm", {"base_url": "", "api_key": CRM_KEY}, "REVPLAN_CRM_BASE_URL", CRM_KEY),
    (MEETING, "calendar", {"url": "", "username": "revplan", "password": CALDAV_PASSWORD}, "REVPLAN_CALDAV_URL",
     CALDAV_PASSWORD),
])
def test_an_unconfigured_connector_gives_an_unavailable_preview_naming_the_setting(
        settings, world, action_type, connector, defaults, setting, secret):
    settings.REVPLAN_CONNECTOR_DEFAULTS = {**settings.REVPLAN_CONNECTOR_DEFAULTS, connector: defaults}
    step = step_of(world, action_type)

    preview = preview_of(step)

    assert preview["unavailable"] is True
    assert preview["connector"] == connector
    assert preview["body"] is None
    assert setting in preview["summary"]
    assert preview["summary"].endswith(".")
    assert secret not in json.dumps(preview)


def test_a_parameter_the_connector_would_refuse_is_said_before_approval(world, radicale, calendar_for):
    calendar_for(world.tenant)
    step = step_of(world, MEETING, parameters={"duration_minutes": 0})

    preview = preview_of(step)

    assert preview["unavailable"] is True
    assert "duration_minutes" in preview["summary"]


def test_only_steps_yet_to_run_are_described(world, radicale, calendar_for):
    calendar_for(world.tenant)
    plan = make_plan(account=world.account, status=PlanStatus.PAUSED, action_types=(MEETING, BRIEF, ESCALATE))
    meeting, brief, escalate = plan.steps.order_by("sequence")
    PlanStep.objects.filter(pk=meeting.pk).update(status=StepStatus.DONE)
    PlanStep.objects.filter(pk=brief.pk).update(status=StepStatus.PENDING_APPROVAL)
    PlanStep.objects.filter(pk=escalate.pk).update(status=StepStatus.FAILED)  # a person's retry would send it

    previews = previews_for(plan.steps.all())

    assert set(previews) == {brief.step_id, escalate.step_id}


def test_the_steps_of_an_ended_plan_are_not_described(world):
    plan = make_plan(account=world.account, status=PlanStatus.ABORTED, action_types=(MEETING, BRIEF))
    loaded = RevenuePlan.objects.prefetch_related("steps").get(pk=plan.pk)

    with CaptureQueriesContext(connection) as queries:
        assert previews_for(loaded.steps.all()) == {}  # the prefetch set each step's plan: no query
    assert len(queries) == 0
    assert previews_for(PlanStep.objects.filter(plan=plan)) == {}  # read by the describer, then left out


# --- describing sends nothing and writes nothing ---------------------------------------------------


def row_counts() -> dict:
    return {model.__name__: model.objects.count()
            for model in (ActionIntent, ExecutionAttempt, InternalRecord, AccountSignal, PlanLedgerEntry)}


def test_describing_writes_no_row_and_sends_nothing(world, crm, crm_for, radicale, calendar_for):
    crm_for(world.tenant, api_key=CRM_KEY)
    calendar_for(world.tenant)
    SignalFactory(account=world.account)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF, ESCALATE))
    before = row_counts()

    with CaptureQueriesContext(connection) as queries:
        previews = previews_for(plan.steps.all())

    assert len(previews) == 3
    assert not any(preview["unavailable"] for preview in previews.values())
    assert row_counts() == before
    assert all(query["sql"].lstrip().upper().startswith(("SELECT", "WITH")) for query in queries), queries
    assert crm.state.requests == []
    with pytest.raises(caldav.lib.error.NotFoundError):  # the tenant's calendar was not even made
        caldav.DAVClient(url=radicale.url, username="revplan", password="").calendar(
            url=previews[plan.steps.get(action_type=MEETING).step_id]["body"]["calendar_url"]).events()


def test_describing_thirty_steps_of_two_tenants_costs_the_reads_of_one(world, other_world, crm_for, calendar_for):
    for tenant in (world.tenant, other_world.tenant):
        crm_for(tenant)
        calendar_for(tenant)
    one = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF, ESCALATE))
    steps = list(one.steps.all())
    with CaptureQueriesContext(connection) as single:
        assert len(previews_for(steps)) == 3
    for index in range(9):
        account = AccountFactory(tenant=(world if index % 2 else other_world).tenant)
        SignalFactory(account=account)
        plan = make_plan(account=account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF, ESCALATE))
        steps += list(plan.steps.all())

    with CaptureQueriesContext(connection) as many:
        previews = previews_for(steps)

    assert len(previews) == 30
    assert len(many) == len(single) == 3  # plans with tenants and accounts; routes and configs; signals
