"""What the other side said is never stored: failure_reason, ExecutionAttempt.error, step.last_error, the
ledger, signals and `why` sentences get our classified sentence with the HTTP status; the raw text (body,
exception) is logged with the intent id. And a connector exception nobody classified fails the intent
permanently at its first delivery, with its try recorded, instead of leaving it EXECUTING."""
import json
import logging

import pytest

from orchestrator.execution.explain import explain_intent
from orchestrator.execution.models import AttemptOutcome, ConnectorConfig, ExecutionAttempt, FailureClass, IntentStatus
from plans import services
from plans.models import AccountSignal, PlanLedgerEntry, StepStatus
from tests.orchestrator.test_engine import approved_plan, run_until_quiet

ESCALATE, MEETING, BRIEF = "ESCALATE_SUPPORT_RISK", "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF"
SECRET_BODY = "SECRET-BODY-123 (stack trace, internal hostnames, echoed headers)"
MAX_ATTEMPTS = 4  # plans.plan_types: ESCALATE_SUPPORT_RISK


@pytest.fixture
def escalation(make_intent, world):
    return lambda: make_intent(ESCALATE, approved_by=world.admin)


@pytest.fixture
def service_log(caplog):
    caplog.set_level(logging.WARNING, logger="orchestrator.execution")
    return caplog


def stored_text(intent) -> str:
    """Every stored place connector text could end up in, for one intent, as one string."""
    intent.refresh_from_db()
    attempts = list(ExecutionAttempt.objects.filter(intent=intent).values_list("error", flat=True))
    entries = [(entry.explanation, entry.data) for entry in PlanLedgerEntry.objects.filter(
        data__intent_id=str(intent.id))]
    signals = list(AccountSignal.objects.filter(payload__intent_id=str(intent.id)).values_list("payload", flat=True))
    return json.dumps([intent.failure_reason, attempts, entries, signals, explain_intent(intent)], default=str)


def logged_details(caplog, intent) -> list[str]:
    return [str(getattr(record, "detail", "")) for record in caplog.records
            if getattr(record, "intent_id", None) == str(intent.id)]


# --- HTTP answers -----------------------------------------------------------------------------------


def test_a_server_error_body_is_logged_never_stored(service, escalation, crm, crm_for, world, service_log):
    crm_for(world.tenant)
    crm.state.scripted = [(500, {}, SECRET_BODY)] * MAX_ATTEMPTS

    intent = service.execute(escalation().id)

    assert (intent.status, intent.failure_class) == (IntentStatus.FAILED, FailureClass.TRANSIENT)
    assert intent.failure_reason == (f"gave up after {MAX_ATTEMPTS} tries; last error: The CRM answered HTTP 500 "
                                     "(server error).")
    assert set(ExecutionAttempt.objects.filter(intent=intent).values_list("error", flat=True)) == {
        "The CRM answered HTTP 500 (server error)."
    }
    assert "SECRET-BODY-123" not in stored_text(intent)
    details = logged_details(service_log, intent)
    assert sum(SECRET_BODY in detail for detail in details) == MAX_ATTEMPTS
    (record, *_) = [record for record in service_log.records if getattr(record, "detail", "") == SECRET_BODY]
    assert (record.levelname, record.http_status) == ("WARNING", 500)


def test_a_refusal_body_is_logged_never_stored(service, escalation, crm, crm_for, world, service_log):
    crm_for(world.tenant)
    crm.state.scripted = [(422, {"Content-Type": "application/json"}, json.dumps({"error": SECRET_BODY}))]

    intent = service.execute(escalation().id)

    assert (intent.status, intent.failure_class) == (IntentStatus.FAILED, FailureClass.PERMANENT)
    assert intent.failure_reason == "The CRM answered HTTP 422 (request refused)."
    assert "SECRET-BODY-123" not in stored_text(intent)
    assert any(SECRET_BODY in detail for detail in logged_details(service_log, intent))


def test_a_secret_the_crm_echoes_is_masked_in_the_log(service, escalation, crm, crm_for, world, service_log):
    crm_for(world.tenant, api_key="tenant-key-0d41")
    crm.state.scripted = [(400, {}, "bad request; you sent Authorization: Bearer tenant-key-0d41")]

    intent = service.execute(escalation().id)

    assert intent.failure_reason == "The CRM answered HTTP 400 (request refused)."
    assert "bad request; you sent Authorization: Bearer ***" in logged_details(service_log, intent)
    assert "tenant-key-0d41" not in json.dumps([vars(record) for record in service_log.records], default=str)


def test_a_connect_error_is_classified_and_its_text_logged(service, escalation, world, service_log):
    from tests.support.radicale_server import free_port

    port = free_port()  # nothing listens there
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"base_url": f"http://127.0.0.1:{port}", "timeout_seconds": 1})

    intent = service.execute(escalation().id)

    assert intent.failure_class == FailureClass.TRANSIENT
    assert intent.failure_reason.endswith("last error: Could not connect to the CRM (connection refused).")
    stored = stored_text(intent)
    assert "Errno" not in stored
    assert "127.0.0.1" not in stored
    assert any("Connection refused" in detail for detail in logged_details(service_log, intent))


@pytest.mark.parametrize(("status", "body"), [
    (201, "<html><body>SECRET-BODY-123: task queued</body></html>"),
    (200, '["SECRET-BODY-123"]'),  # JSON, but not an object
])
def test_a_2xx_answer_that_is_not_a_json_object_fails_permanently_at_the_first_delivery(
        service, escalation, crm, crm_for, world, service_log, status, body):
    crm_for(world.tenant)
    crm.state.scripted = [(status, {}, body)]

    intent = service.execute(escalation().id)

    assert (intent.status, intent.failure_class) == (IntentStatus.FAILED, FailureClass.PERMANENT)
    assert (intent.attempts, intent.deliveries) == (1, 1)
    assert intent.failure_reason == f"The CRM answered HTTP {status} but not with a JSON object."
    assert list(ExecutionAttempt.objects.filter(intent=intent).values_list("number", "outcome", "error")) == [
        (1, AttemptOutcome.PERMANENT_ERROR, intent.failure_reason)
    ]
    assert "SECRET-BODY-123" not in stored_text(intent)
    assert body in logged_details(service_log, intent)
    assert len(crm.state.posts()) == 1


def test_the_step_last_error_and_the_plan_ledger_carry_the_sentence_only(settings, world, crm, crm_for):
    settings.ORCHESTRATOR_STEP_RETRY_BASE_SECONDS = 0
    crm_for(world.tenant)
    crm.state.scripted = [(500, {}, SECRET_BODY)] * 50
    plan = approved_plan(world, ESCALATE)
    run_until_quiet(plan.id)
    escalate = plan.steps.get(action_type=ESCALATE)
    services.step_approve(plan_id=plan.id, step_id=escalate.step_id, user=world.admin)

    run_until_quiet(plan.id)

    escalate.refresh_from_db()
    assert escalate.status == StepStatus.FAILED
    assert escalate.last_error.startswith(f"{FailureClass.TRANSIENT}: gave up after")
    assert escalate.last_error.endswith("The CRM answered HTTP 500 (server error).")
    ledger = json.dumps([(entry.explanation, entry.data) for entry in PlanLedgerEntry.objects.filter(plan=plan)],
                        default=str)
    assert "HTTP 500 (server error)" in ledger
    assert "SECRET-BODY-123" not in ledger


# --- exceptions no connector classified -------------------------------------------------------------


def test_an_unexpected_connector_exception_fails_permanently_with_its_try_recorded(service, settings, radicale,
                                                                                   make_intent, world, service_log):
    # A calendar on another host than the server: the caldav library refuses the join with a ValueError.
    settings.REVPLAN_TENANT_ENDPOINT_ALLOWLIST = ["127.0.0.1", "localhost"]
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar", settings={
        "url": radicale.url, "calendar_url": f"http://localhost:{radicale.port}/revplan/elsewhere/"})

    intent = service.execute(make_intent(MEETING).id)

    assert (intent.status, intent.failure_class) == (IntentStatus.FAILED, FailureClass.PERMANENT)
    assert (intent.attempts, intent.deliveries) == (1, 1)
    assert intent.failure_reason == ("The calendar connector failed unexpectedly while carrying it out (ValueError); "
                                     "retrying cannot help.")
    assert list(ExecutionAttempt.objects.filter(intent=intent).values_list("outcome", "error")) == [
        (AttemptOutcome.PERMANENT_ERROR, intent.failure_reason)
    ]
    (record,) = [record for record in service_log.records if record.getMessage() == "connector raised unexpectedly"]
    assert (record.levelname, record.intent_id, record.exc_info[0]) == ("ERROR", str(intent.id), ValueError)
    assert "localhost" not in stored_text(intent)


def test_an_unexpected_exception_while_building_the_connector_fails_at_once(service, make_intent, world, service_log):
    # Saved past clean(): a timeout that is not a number.
    ConnectorConfig.objects.create(tenant=world.tenant, connector="crm",
                                   settings={"base_url": "https://93.184.216.34", "timeout_seconds": "soon"})

    intent = service.execute(make_intent(ESCALATE, approved_by=world.admin).id)

    assert (intent.status, intent.failure_class) == (IntentStatus.FAILED, FailureClass.PERMANENT)
    assert intent.failure_reason == ("The connector failed unexpectedly while preparing (ValueError); "
                                     "retrying cannot help.")
    assert not ExecutionAttempt.objects.filter(intent=intent).exists()  # nothing was tried
    assert [record.intent_id for record in service_log.records
            if record.getMessage() == "connector set-up raised unexpectedly"] == [str(intent.id)]


@pytest.mark.parametrize("duration", ["half an hour", 0, -15, 12.5, True, {"minutes": 30}, 100000])
def test_an_unreadable_meeting_duration_fails_permanently_at_the_first_delivery(service, radicale, calendar_for,
                                                                                 make_intent, world, duration):
    calendar_for(world.tenant)

    intent = service.execute(make_intent(MEETING, parameters={"duration_minutes": duration}).id)

    assert (intent.status, intent.failure_class) == (IntentStatus.FAILED, FailureClass.PERMANENT)
    assert intent.deliveries == 1
    assert intent.failure_reason == ("The meeting's `duration_minutes` parameter is not a whole number of minutes "
                                     "from 1 to 1440.")
    # Checked before anything is sent, so there is no try to record and no event on the server.
    assert not ExecutionAttempt.objects.filter(intent=intent).exists()


def test_a_duration_given_as_digits_is_read(service, radicale, calendar_for, make_intent, world):
    calendar_for(world.tenant)

    intent = service.execute(make_intent(MEETING, parameters={"duration_minutes": "45"}).id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
