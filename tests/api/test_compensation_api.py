"""Undoing what actions did: POST /api/v1/actions/{id}/compensate/ and POST /plans/{id}/abort/ with
"compensate": true, against the stand-in CRM (it records each DELETE) and the private Radicale calendar, and
the internal connector's records; every role, another tenant, the wrong state, the ledger entries, and what
is reported when an undo fails (a classified reason, never the other side's text)."""
import socket
import uuid
from datetime import timedelta

import caldav
import pytest
from django.utils import timezone

from orchestrator.execution.models import ActionIntent, ConnectorConfig, IntentStatus, InternalRecord
from orchestrator.execution.service import ExecutionService, intent_create
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan, Role
from tests.api.helpers import assert_error, client_for
from tests.factories import MembershipFactory, UserFactory, make_plan

MEETING, BRIEF, ESCALATION = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


@pytest.fixture(autouse=True)
def stand_ins_allowed(settings):
    """The stand-ins listen on 127.0.0.1 over http, which the SSRF guard refuses for a tenant's endpoint."""
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    settings.REVPLAN_RETRY_BASE_SECONDS = 0.01
    settings.REVPLAN_RETRY_MAX_DELAY_SECONDS = 0.05


@pytest.fixture
def connectors(world, crm, radicale):
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"base_url": crm.base_url, "api_key": "k", "timeout_seconds": 2})
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar",
                                   settings={"url": radicale.url, "timeout_seconds": 5})
    return crm, radicale


def run(world, plan, action_type) -> ActionIntent:
    """The step's first attempt, carried out through the execution spine."""
    step = plan.steps.get(action_type=action_type)
    intent = intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type=action_type,
                           expires_at=timezone.now() + timedelta(hours=1), approved_by=world.approver,
                           plan_id=plan.id, step_id=step.step_id, attempt=1)
    return ExecutionService().execute(intent.id)


def deletes(crm) -> list[str]:
    return [path for method, path, _, _ in crm.state.requests if method == "DELETE"]


def calendar_events(radicale, intent) -> list:
    client = caldav.DAVClient(url=radicale.url, username="revplan", password="")
    return client.calendar(url=intent.external_ids["calendar_url"]).events()


def entries_of(intent, event_type=None) -> list[PlanLedgerEntry]:
    found = PlanLedgerEntry.objects.filter(data__intent_id=str(intent.id)).order_by("id")
    return list(found.filter(event_type=event_type) if event_type else found)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def compensate_url(intent) -> str:
    return f"/api/v1/actions/{intent.id}/compensate/"


# --- one action ----------------------------------------------------------------------------------


def test_a_tenant_admin_undoes_a_crm_task_once(world, connectors):
    crm, _ = connectors
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(ESCALATION,))
    intent = run(world, plan, ESCALATION)
    task_id = intent.external_ids["task_id"]
    api = client_for(world.admin)
    response = api.post(compensate_url(intent), {"reason": "sent to the wrong lead"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["undone"], body["reason"], body["intent"]["status"]) == (True, None, "SUCCEEDED")
    assert body["intent"]["compensated_at"] is not None
    assert "It was undone on" in body["intent"]["outcome"]
    assert deletes(crm) == [f"/tasks/{task_id}"]
    assert crm.state.tasks == {}
    [entry] = entries_of(intent, EventType.ACTION_COMPENSATED)
    assert (entry.actor, entry.plan_id, entry.data["reason"]) == (f"user:{world.admin.pk}", plan.id,
                                                                  "sent to the wrong lead")
    # again: 409, no second DELETE, no second entry
    assert_error(api.post(compensate_url(intent), {}, format="json"), 409, "INTENT_NOT_COMPENSABLE")
    assert deletes(crm) == [f"/tasks/{task_id}"]
    assert len(entries_of(intent, EventType.ACTION_COMPENSATED)) == 1


def test_undoing_a_meeting_removes_the_draft_event_from_the_calendar(world, connectors):
    _, radicale = connectors
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING,))
    intent = run(world, plan, MEETING)
    assert len(calendar_events(radicale, intent)) == 1
    response = client_for(world.admin).post(compensate_url(intent), {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["undone"] is True
    assert calendar_events(radicale, intent) == []
    assert len(entries_of(intent, EventType.ACTION_COMPENSATED)) == 1


def test_undoing_a_brief_removes_the_internal_record(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    intent = run(world, plan, BRIEF)
    assert InternalRecord.objects.filter(effect_key=intent.effect_key).exists()
    assert client_for(world.admin).post(compensate_url(intent), {}, format="json").json()["undone"] is True
    assert not InternalRecord.objects.filter(effect_key=intent.effect_key).exists()


@pytest.mark.parametrize("who", ["viewer", "seller", "approver"])
def test_only_a_tenant_admin_may_undo(world, who):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    intent = run(world, plan, BRIEF)
    count = PlanLedgerEntry.objects.count()
    assert_error(client_for(getattr(world, who)).post(compensate_url(intent), {}, format="json"), 403, "NOT_ALLOWED")
    intent.refresh_from_db()
    assert intent.compensated_at is None
    assert InternalRecord.objects.filter(effect_key=intent.effect_key).exists()
    assert PlanLedgerEntry.objects.count() == count


def test_another_tenants_action_is_404(world, other_world):
    theirs = intent_create(tenant_id=other_world.tenant.id, account_id=other_world.account.id, action_type=BRIEF,
                           expires_at=timezone.now() + timedelta(hours=1), approved_by=other_world.approver)
    theirs = ExecutionService().execute(theirs.id)
    assert_error(client_for(world.admin).post(compensate_url(theirs), {}, format="json"), 404, "NOT_FOUND")
    assert InternalRecord.objects.filter(effect_key=theirs.effect_key).exists()


def test_a_pending_or_failed_action_is_409(world):
    pending = intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type=BRIEF,
                            expires_at=timezone.now() + timedelta(hours=1), approved_by=world.approver)
    failed = intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type=ESCALATION,
                           expires_at=timezone.now() + timedelta(hours=1), approved_by=world.admin)
    failed = ExecutionService().execute(failed.id)  # no CRM configured: a permanent failure
    assert failed.status == IntentStatus.FAILED
    for intent in (pending, failed):
        body = assert_error(client_for(world.admin).post(compensate_url(intent), {}, format="json"), 409,
                            "INTENT_NOT_COMPENSABLE")
        assert intent.status in body["detail"]
        assert not entries_of(intent, EventType.ACTION_COMPENSATED)


def test_a_crm_that_cannot_be_reached_is_reported_and_ledgered_not_a_500(world, connectors):
    crm, _ = connectors
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(ESCALATION,))
    intent = run(world, plan, ESCALATION)
    ConnectorConfig.objects.filter(tenant=world.tenant, connector="crm").update(
        settings={"base_url": f"http://127.0.0.1:{closed_port()}", "api_key": "k", "timeout_seconds": 1})
    response = client_for(world.admin).post(compensate_url(intent), {}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["undone"] is False
    assert "connection refused" in body["reason"]
    assert "127.0.0.1" not in body["reason"]
    [failed] = [entry for entry in entries_of(intent) if entry.reason_code == "COMPENSATION_FAILED"]
    assert failed.event_type == EventType.ACTION_COMPENSATION_FAILED
    assert "could not be undone" in failed.explanation
    intent.refresh_from_db()
    assert intent.compensated_at is None
    assert list(crm.state.tasks) == [intent.external_ids["task_id"]]  # the effect stands


# --- abort with compensate -----------------------------------------------------------------------


@pytest.fixture
def finished_plan(world, connectors):
    """An ACTIVE plan whose three steps each ran once: a meeting, a brief, a CRM task."""
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF, ESCALATION))
    return plan, {action_type: run(world, plan, action_type) for action_type in (MEETING, BRIEF, ESCALATION)}


def abort(user, plan, **body):
    return client_for(user).post(f"/api/v1/plans/{plan.id}/abort/", {"reason": "deal lost", **body}, format="json")


def test_abort_with_compensate_undoes_every_finished_step_newest_first(world, finished_plan, connectors):
    plan, intents = finished_plan
    crm, radicale = connectors
    response = abort(world.admin, plan, compensate=True)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["plan"]["plan_status"] == "ABORTED"
    assert [item["action_type"] for item in body["compensated"]] == [ESCALATION, BRIEF, MEETING]
    assert (body["not_undone"], body["cancelled"]) == ([], [])
    for intent in intents.values():
        intent.refresh_from_db()
        assert intent.compensated_at is not None
        [entry] = entries_of(intent, EventType.ACTION_COMPENSATED)
        assert (entry.actor, entry.data["reason"]) == (f"user:{world.admin.pk}", "the plan was aborted: deal lost")
    assert not InternalRecord.objects.filter(effect_key=intents[BRIEF].effect_key).exists()
    assert deletes(crm) == [f"/tasks/{intents[ESCALATION].external_ids['task_id']}"]
    assert calendar_events(radicale, intents[MEETING]) == []


def test_what_cannot_be_undone_is_reported_and_the_rest_is_undone(world, finished_plan, crm):
    plan, intents = finished_plan
    ConnectorConfig.objects.filter(tenant=world.tenant, connector="crm").update(
        settings={"base_url": f"http://127.0.0.1:{closed_port()}", "api_key": "k", "timeout_seconds": 1})
    ActionIntent.objects.filter(pk=intents[MEETING].pk).update(external_ids={})  # its event can no longer be found
    body = abort(world.admin, plan, compensate=True).json()
    assert [item["action_type"] for item in body["compensated"]] == [BRIEF]
    reasons = {item["action_type"]: item["reason"] for item in body["not_undone"]}
    assert set(reasons) == {ESCALATION, MEETING}
    assert "connection refused" in reasons[ESCALATION]
    assert "event_uid" in reasons[MEETING]
    assert entries_of(intents[ESCALATION])[-1].reason_code == "COMPENSATION_FAILED"
    assert RevenuePlan.objects.get(pk=plan.pk).plan_status == PlanStatus.ABORTED


def test_abort_with_compensate_cancels_what_had_not_started(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    step = plan.steps.get()
    pending = intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type=BRIEF,
                            expires_at=timezone.now() + timedelta(hours=1), approved_by=world.approver,
                            plan_id=plan.id, step_id=step.step_id, attempt=1)
    body = abort(world.admin, plan, compensate=True).json()
    assert [item["intent_id"] for item in body["cancelled"]] == [str(pending.id)]
    pending.refresh_from_db()
    assert pending.status == IntentStatus.CANCELLED


@pytest.mark.parametrize("who", ["viewer", "seller", "approver", "other_seller"])
def test_abort_with_compensate_is_403_for_any_other_role_and_the_plan_stays(world, finished_plan, who):
    plan, _intents = finished_plan
    if who == "other_seller":
        user = UserFactory()
        MembershipFactory(user=user, tenant=world.tenant, role=Role.SELLER)
    else:
        user = getattr(world, who)
    count = PlanLedgerEntry.objects.count()
    assert_error(abort(user, plan, compensate=True), 403, "NOT_ALLOWED")
    assert RevenuePlan.objects.get(pk=plan.pk).plan_status == PlanStatus.ACTIVE
    assert PlanLedgerEntry.objects.count() == count
    assert not ActionIntent.objects.filter(plan=plan, compensated_at__isnull=False).exists()


def test_abort_without_compensate_keeps_its_shape_and_undoes_nothing(world, finished_plan):
    plan, _intents = finished_plan
    response = abort(world.approver, plan, compensate=False)
    assert response.status_code == 200, response.content
    assert response.json()["plan_status"] == "ABORTED"
    assert "compensated" not in response.json()
    assert not ActionIntent.objects.filter(plan=plan, compensated_at__isnull=False).exists()


def test_abort_with_compensate_of_another_tenants_plan_is_404_and_of_a_finished_plan_409(world, other_world):
    theirs = make_plan(account=other_world.account, status=PlanStatus.ACTIVE)
    theirs_body = assert_error(abort(world.admin, theirs, compensate=True), 404, "NOT_FOUND")
    missing = RevenuePlan(pk=uuid.uuid4())
    # word for word what a plan that does not exist gets: nothing tells the two apart
    assert theirs_body == assert_error(abort(world.admin, missing, compensate=True), 404, "NOT_FOUND")
    assert RevenuePlan.objects.get(pk=theirs.pk).plan_status == PlanStatus.ACTIVE
    done = make_plan(account=world.account, status=PlanStatus.COMPLETED)
    count = PlanLedgerEntry.objects.count()
    assert_error(abort(world.admin, done, compensate=True), 409, "INVALID_TRANSITION")
    assert PlanLedgerEntry.objects.count() == count
    assert_error(abort(world.admin, done, compensate="yes please"), 400, "VALIDATION_ERROR")
