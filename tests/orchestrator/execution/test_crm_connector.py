"""The CRM connector through ExecutionService.execute, against the scripted CRM in tests/support.

The connector's real HTTP code runs; the CRM dedupes by Idempotency-Key as a real one does, and
records every request, so each test checks what was sent as well as what was recorded.
"""
import logging
import threading
import time

import pytest
from django.db import connection

from orchestrator.execution.models import (
    ActionIntent,
    AttemptOutcome,
    ExecutionAttempt,
    FailureClass,
    IntentStatus,
    Outcome,
)
from orchestrator.execution.service import ExecutionService
from plans import ledger
from plans.errors import Conflict
from plans.models import AccountSignal, EventType, PlanLedgerEntry
from tests.support.crm_server import CrmServer

ACTION_TYPE = "ESCALATE_SUPPORT_RISK"
MAX_ATTEMPTS = 4  # plans.plan_types: ESCALATE_SUPPORT_RISK
BARRIER_TIMEOUT_SECONDS = 10
JOIN_TIMEOUT_SECONDS = 30
RACE_ROUNDS = 10


@pytest.fixture
def escalation(make_intent, world):
    def make(**fields):
        return make_intent(ACTION_TYPE, approved_by=world.admin, **fields)

    return make


def ledger_entries(intent, event_type=None):
    entries = PlanLedgerEntry.objects.filter(data__intent_id=str(intent.id)).order_by("chain_seq")
    return list(entries.filter(event_type=event_type) if event_type else entries)


def signals(intent):
    return list(AccountSignal.objects.filter(payload__intent_id=str(intent.id)))


def attempt_outcomes(intent):
    return list(ExecutionAttempt.objects.filter(intent=intent).values_list("outcome", flat=True))


def test_created_task_is_recorded_with_its_crm_id(service, escalation, crm, crm_for, world):
    crm_for(world.tenant)
    intent = escalation()

    intent = service.execute(intent.id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert intent.connector == "crm"
    assert intent.attempts == 1
    ((task_id, task_body),) = crm.state.tasks.items()
    assert intent.external_ids == {"task_id": task_id}
    ((method, path, headers, body),) = crm.state.requests
    assert (method, path) == ("POST", "/tasks")
    assert headers["Idempotency-Key"] == intent.effect_key == f"intent:{intent.id}"
    assert headers["Authorization"] == "Bearer k"
    assert body == task_body
    assert body["account_external_id"] == world.account.external_id
    assert body["action_type"] == ACTION_TYPE

    ((attempt_row),) = ExecutionAttempt.objects.filter(intent=intent)
    assert (attempt_row.number, attempt_row.outcome) == (1, AttemptOutcome.SUCCEEDED)
    assert attempt_row.external_ids == {"task_id": task_id}
    assert attempt_row.delay_before_seconds == 0

    (executed,) = ledger_entries(intent)
    assert executed.event_type == EventType.ACTION_EXECUTED
    assert executed.plan_id is None  # the tenant's chain
    assert executed.tenant_id == world.tenant.id
    assert executed.reason_code == Outcome.EXECUTION_SUCCEEDED
    assert executed.data["external_ids"] == {"task_id": task_id}
    assert executed.data["outcome"] == Outcome.EXECUTION_SUCCEEDED
    assert ledger.verify_ledger(tenant_id=world.tenant.id).ok

    (signal,) = signals(intent)
    assert signal.account_id == world.account.id
    assert signal.signal_type == "ACTION_EXECUTED"
    assert signal.payload["outcome"] == Outcome.EXECUTION_SUCCEEDED
    assert signal.payload["external_ids"] == {"task_id": task_id}


def test_server_errors_are_retried_with_growing_delays(service, sleeps, escalation, crm, crm_for, world):
    crm_for(world.tenant)
    crm.state.scripted = [503, 503]
    intent = escalation()

    intent = service.execute(intent.id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert intent.attempts == 3
    attempts = list(ExecutionAttempt.objects.filter(intent=intent))
    assert [(row.number, row.outcome) for row in attempts] == [
        (1, AttemptOutcome.TRANSIENT_ERROR),
        (2, AttemptOutcome.TRANSIENT_ERROR),
        (3, AttemptOutcome.SUCCEEDED),
    ]
    assert all("HTTP 503" in row.error for row in attempts[:2])
    delays = [row.delay_before_seconds for row in attempts]
    assert delays[0] == 0
    assert 0 < delays[1] < delays[2]
    assert sleeps == delays[1:]

    retries = ledger_entries(intent, EventType.ACTION_RETRY_SCHEDULED)
    assert [entry.data["attempt_number"] for entry in retries] == [1, 2]
    assert [entry.data["delay_seconds"] for entry in retries] == delays[1:]
    assert len(ledger_entries(intent, EventType.ACTION_EXECUTED)) == 1

    # Three POSTs, all with one key; the scripted 503s made nothing, so the CRM holds one task.
    assert [headers["Idempotency-Key"] for _, _, headers, _ in crm.state.posts()] == [intent.effect_key] * 3
    assert list(crm.state.tasks) == [intent.external_ids["task_id"]]


def test_retry_after_sets_a_floor_under_the_next_delay(service, sleeps, escalation, crm, crm_for, world):
    crm_for(world.tenant)
    crm.state.scripted = [(429, {"Retry-After": "0.3"})]
    intent = escalation()

    intent = service.execute(intent.id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    first, second = ExecutionAttempt.objects.filter(intent=intent)
    assert first.outcome == AttemptOutcome.TRANSIENT_ERROR
    assert "HTTP 429" in first.error
    # Without the header the delay would be 0.01 to 0.02s (base 0.02); the server asked for 0.3s.
    assert 0.3 <= second.delay_before_seconds <= 1.0
    assert sleeps == [second.delay_before_seconds]
    assert len(crm.state.posts()) == 2


def test_bad_request_fails_at_once(service, sleeps, escalation, crm, crm_for, world):
    crm_for(world.tenant)
    crm.state.scripted = [400]
    intent = escalation()

    intent = service.execute(intent.id)

    assert intent.status == IntentStatus.FAILED
    assert intent.failure_class == FailureClass.PERMANENT
    assert "HTTP 400" in intent.failure_reason
    assert len(crm.state.posts()) == 1
    assert crm.state.tasks == {}
    assert sleeps == []
    assert attempt_outcomes(intent) == [AttemptOutcome.PERMANENT_ERROR]

    assert [entry.event_type for entry in ledger_entries(intent)] == [EventType.ACTION_FAILED]
    (failed,) = ledger_entries(intent)
    assert failed.reason_code == FailureClass.PERMANENT
    assert failed.data["outcome"] == Outcome.EXECUTION_FAILED
    assert "HTTP 400" in failed.data["failure_reason"]
    (signal,) = signals(intent)
    assert signal.signal_type == "ACTION_FAILED"
    assert signal.payload["outcome"] == Outcome.EXECUTION_FAILED
    assert signal.payload["failure_class"] == FailureClass.PERMANENT


def test_retries_run_out_after_max_attempts(service, sleeps, escalation, crm, crm_for, world):
    crm_for(world.tenant)
    crm.state.scripted = [503] * (MAX_ATTEMPTS + 2)
    intent = escalation()

    intent = service.execute(intent.id)

    assert intent.status == IntentStatus.FAILED
    assert intent.failure_class == FailureClass.TRANSIENT
    assert f"gave up after {MAX_ATTEMPTS} tries" in intent.failure_reason
    assert "HTTP 503" in intent.failure_reason
    assert intent.attempts == MAX_ATTEMPTS
    assert len(crm.state.posts()) == MAX_ATTEMPTS
    assert len(crm.state.scripted) == 2  # the last two answers were never asked for
    assert crm.state.tasks == {}
    assert attempt_outcomes(intent) == [AttemptOutcome.TRANSIENT_ERROR] * MAX_ATTEMPTS
    assert len(sleeps) == MAX_ATTEMPTS - 1
    assert sleeps == sorted(sleeps)

    assert [entry.event_type for entry in ledger_entries(intent)] == (
        [EventType.ACTION_RETRY_SCHEDULED] * (MAX_ATTEMPTS - 1) + [EventType.ACTION_FAILED]
    )
    failed = ledger_entries(intent, EventType.ACTION_FAILED)[0]
    assert failed.reason_code == FailureClass.TRANSIENT
    assert failed.data["attempts"] == MAX_ATTEMPTS
    (signal,) = signals(intent)
    assert signal.signal_type == "ACTION_FAILED"
    assert signal.payload["outcome"] == Outcome.EXECUTION_FAILED
    assert signal.payload["failure_class"] == FailureClass.TRANSIENT


def test_a_timed_out_try_that_still_made_the_task_is_found_by_the_retry(escalation, crm, crm_for, world):
    """The first answer comes after the client gave up; the task exists, and the retry gets it back."""
    crm_for(world.tenant)  # timeout_seconds 0.5
    crm.state.slow_seconds = 1.0
    intent = escalation()

    def wait_for_the_slow_request_to_finish(seconds: float) -> None:
        # Deterministic instead of timing-based: the retry is sent only once the CRM has made the task.
        deadline = time.monotonic() + 5
        while not crm.state.tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        crm.state.slow_seconds = 0.0

    intent = ExecutionService(sleep=wait_for_the_slow_request_to_finish).execute(intent.id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    ((task_id, _),) = crm.state.tasks.items()
    assert intent.external_ids == {"task_id": task_id}
    first, second = ExecutionAttempt.objects.filter(intent=intent)
    assert first.outcome == AttemptOutcome.TRANSIENT_ERROR
    assert first.error == "The CRM timed out after 0.5 s."
    assert second.outcome == AttemptOutcome.SUCCEEDED
    assert second.external_ids == {"task_id": task_id}
    posts = crm.state.posts()
    assert len(posts) == 2
    assert {headers["Idempotency-Key"] for _, _, headers, _ in posts} == {intent.effect_key}
    assert crm.state.tasks_by_key == {intent.effect_key: task_id}


def test_unconfigured_crm_fails_with_the_setting_to_fix(service, settings, escalation, crm, world):
    settings.REVPLAN_CONNECTOR_DEFAULTS = {
        **settings.REVPLAN_CONNECTOR_DEFAULTS,
        "crm": {"base_url": "", "api_key": "", "timeout_seconds": 1.0},
    }
    intent = escalation()

    intent = service.execute(intent.id)

    assert intent.status == IntentStatus.FAILED
    assert intent.failure_class == FailureClass.PERMANENT
    assert "REVPLAN_CRM_BASE_URL" in intent.failure_reason
    assert intent.connector == "crm"
    assert crm.state.requests == []
    assert not ExecutionAttempt.objects.filter(intent=intent).exists()
    (failed,) = ledger_entries(intent)
    assert failed.event_type == EventType.ACTION_FAILED
    assert "REVPLAN_CRM_BASE_URL" in failed.data["failure_reason"]
    assert [signal.signal_type for signal in signals(intent)] == ["ACTION_FAILED"]


def test_each_tenant_reaches_only_its_own_crm(service, escalation, make_intent, crm, crm_for, world, other_world):
    crm_for(world.tenant)
    with CrmServer() as other_crm:
        crm_for(other_world.tenant, base_url=other_crm.base_url, api_key="other-k")
        ours = escalation()
        theirs = make_intent(ACTION_TYPE, account=other_world.account, approved_by=other_world.admin)

        ours = service.execute(ours.id)
        theirs = service.execute(theirs.id)

        assert ours.status == theirs.status == IntentStatus.SUCCEEDED
        ((_, _, our_headers, our_body),) = crm.state.requests
        ((_, _, their_headers, their_body),) = other_crm.state.requests
        assert (our_headers["Idempotency-Key"], our_headers["Authorization"]) == (ours.effect_key, "Bearer k")
        assert (their_headers["Idempotency-Key"], their_headers["Authorization"]) == (
            theirs.effect_key, "Bearer other-k"
        )
        assert our_body["account_external_id"] == world.account.external_id
        assert their_body["account_external_id"] == other_world.account.external_id
        assert list(crm.state.tasks) == [ours.external_ids["task_id"]]
        assert list(other_crm.state.tasks) == [theirs.external_ids["task_id"]]


def test_compensate_deletes_the_task_once(service, escalation, crm, crm_for, world):
    crm_for(world.tenant)
    intent = service.execute(escalation().id)
    task_id = intent.external_ids["task_id"]

    intent = service.compensate(intent.id, actor="user:admin")

    assert intent.compensated_at is not None
    assert intent.status == IntentStatus.SUCCEEDED  # undone, not re-decided
    deletes = [request for request in crm.state.requests if request[0] == "DELETE"]
    assert [(method, path) for method, path, _, _ in deletes] == [("DELETE", f"/tasks/{task_id}")]
    assert deletes[0][2]["Authorization"] == "Bearer k"
    assert crm.state.tasks == {}
    (compensated,) = ledger_entries(intent, EventType.ACTION_COMPENSATED)
    assert compensated.actor == "user:admin"
    assert compensated.data["external_ids"] == {"task_id": task_id}

    with pytest.raises(Conflict) as raised:
        service.compensate(intent.id, actor="user:admin")

    assert raised.value.code == "INTENT_NOT_COMPENSABLE"
    assert len([request for request in crm.state.requests if request[0] == "DELETE"]) == 1
    assert len(ledger_entries(intent, EventType.ACTION_COMPENSATED)) == 1


def test_a_failed_intent_cannot_be_compensated(service, escalation, crm, crm_for, world):
    crm_for(world.tenant)
    crm.state.scripted = [400]
    intent = service.execute(escalation().id)

    with pytest.raises(Conflict):
        service.compensate(intent.id, actor="user:admin")

    assert [request[0] for request in crm.state.requests] == ["POST"]
    assert ActionIntent.objects.get(pk=intent.id).compensated_at is None


def test_executing_twice_sends_once_and_returns_the_recorded_outcome(service, escalation, crm, crm_for, world):
    crm_for(world.tenant)
    intent = escalation()
    first = service.execute(intent.id)

    second = service.execute(intent.id)

    assert first.status == second.status == IntentStatus.SUCCEEDED
    assert second.external_ids == first.external_ids
    assert second.finished_at == first.finished_at
    assert second.attempts == 1
    assert len(crm.state.posts()) == 1
    assert attempt_outcomes(intent) == [AttemptOutcome.SUCCEEDED]
    assert len(ledger_entries(intent, EventType.ACTION_EXECUTED)) == 1
    assert len(signals(intent)) == 1


def execute_in_thread(service, intent_id, barrier: threading.Barrier, outcomes: list) -> None:
    """Runs on its own thread, so on its own database connection."""
    try:
        connection.ensure_connection()  # connect before the barrier, so both calls start together
        barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
        outcomes.append(service.execute(intent_id))
    except BaseException as error:  # the test asserts on whatever happened
        outcomes.append(error)
    finally:
        connection.close()


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_one_request(service, escalation, crm, crm_for, world, caplog):
    crm_for(world.tenant)
    caplog.set_level(logging.WARNING, logger="orchestrator.execution.service")
    for round_number in range(RACE_ROUNDS):
        intent = escalation()
        barrier = threading.Barrier(2)
        outcomes: list = []
        threads = [
            threading.Thread(target=execute_in_thread, args=(service, intent.id, barrier, outcomes), daemon=True)
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=JOIN_TIMEOUT_SECONDS)
        assert not any(thread.is_alive() for thread in threads), "an execution hung"

        assert all(isinstance(outcome, ActionIntent) for outcome in outcomes), f"round {round_number}: {outcomes}"
        intent.refresh_from_db()
        assert intent.status == IntentStatus.SUCCEEDED, f"round {round_number}: {intent.failure_reason}"
        posts = [post for post in crm.state.posts() if post[2]["Idempotency-Key"] == intent.effect_key]
        assert len(posts) == 1, f"round {round_number}"
        # One worker ran it from its first try: the other neither sent nor took the claim over.
        assert intent.attempts == 1, f"round {round_number}"
        assert list(ExecutionAttempt.objects.filter(intent=intent).values_list("number", "outcome")) == [
            (1, AttemptOutcome.SUCCEEDED)
        ], f"round {round_number}"
        assert len(ledger_entries(intent, EventType.ACTION_EXECUTED)) == 1
        assert len(signals(intent)) == 1
    assert len(crm.state.tasks) == RACE_ROUNDS
    # The loser found the intent claimed and stood back; it never took a live claim over.
    assert not [record for record in caplog.records if "claim lost" in record.getMessage()]
