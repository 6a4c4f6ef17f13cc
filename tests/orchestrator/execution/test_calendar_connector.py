"""The calendar connector through ExecutionService.execute, against a private Radicale CalDAV server.

Each check reads the calendar back with the caldav library: a draft meeting is one TENTATIVE
VEVENT without attendees, keyed by the effect key, in the tenant's own calendar.
"""
import threading
from datetime import timedelta

import caldav
import pytest
from django.db import connection
from django.utils import timezone

from orchestrator.execution.connectors.calendar import event_uid
from orchestrator.execution.models import (
    ActionIntent,
    AttemptOutcome,
    ConnectorConfig,
    ExecutionAttempt,
    FailureClass,
    IntentStatus,
    Outcome,
)
from orchestrator.execution.service import intent_create
from plans import ledger
from plans.errors import Conflict
from plans.models import AccountSignal, EventType, PlanLedgerEntry, PlanStatus
from tests.factories import make_plan
from tests.support.radicale_server import free_port

ACTION_TYPE = "REQUEST_RENEWAL_MEETING"
MAX_ATTEMPTS = 3  # plans.plan_types: REQUEST_RENEWAL_MEETING
BARRIER_TIMEOUT_SECONDS = 10
JOIN_TIMEOUT_SECONDS = 60


def events_in(radicale, calendar_url: str) -> list:
    client = caldav.DAVClient(url=radicale.url, username="revplan", password="")
    return client.calendar(url=calendar_url).events()


def vevents_in(radicale, calendar_url: str) -> list:
    return [event.icalendar_component for event in events_in(radicale, calendar_url)]


def ledger_entries(intent, event_type):
    return list(PlanLedgerEntry.objects.filter(data__intent_id=str(intent.id), event_type=event_type))


def run_together(target, args_per_thread: list[tuple]) -> list:
    """Start one thread per args tuple at a barrier; each uses its own database connection."""
    barrier = threading.Barrier(len(args_per_thread))
    outcomes: list = []

    def run(*args):
        try:
            connection.ensure_connection()  # connect before the barrier, so the calls start together
            barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
            outcomes.append(target(*args))
        except BaseException as error:  # the test asserts on whatever happened
            outcomes.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=args, daemon=True) for args in args_per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "an execution hung"
    return outcomes


def plan_step_intents(world, attempts: tuple[int, ...]) -> list[ActionIntent]:
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(ACTION_TYPE,))
    step = plan.steps.get()
    return [
        intent_create(
            tenant_id=world.tenant.id, account_id=world.account.id, action_type=ACTION_TYPE,
            expires_at=timezone.now() + timedelta(hours=1), approved_by=world.approver,
            plan_id=plan.id, step_id=step.step_id, attempt=attempt,
        )
        for attempt in attempts
    ]


def test_a_draft_meeting_is_one_tentative_event_without_attendees(service, make_intent, radicale, calendar_for, world):
    calendar_for(world.tenant)
    intent = make_intent(ACTION_TYPE)

    intent = service.execute(intent.id)

    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert intent.connector == "calendar"
    expected_calendar_url = f"{radicale.url}revplan/revplan-{world.tenant.slug}/"
    assert intent.external_ids["calendar_url"] == expected_calendar_url
    assert intent.external_ids["event_uid"] == event_uid(intent.effect_key)
    assert intent.external_ids["event_url"].startswith(expected_calendar_url)

    (vevent,) = vevents_in(radicale, intent.external_ids["calendar_url"])
    assert str(vevent["UID"]) == event_uid(intent.effect_key)
    assert str(vevent["STATUS"]) == "TENTATIVE"
    assert vevent.get("ATTENDEE") is None  # a draft: nobody is invited, so nothing is sent
    assert world.account.name in str(vevent["SUMMARY"])
    assert "not sent" in str(vevent["DESCRIPTION"])

    (attempt_row,) = ExecutionAttempt.objects.filter(intent=intent)
    assert attempt_row.outcome == AttemptOutcome.SUCCEEDED
    assert attempt_row.external_ids == intent.external_ids
    (executed,) = ledger_entries(intent, EventType.ACTION_EXECUTED)
    assert executed.data["external_ids"] == intent.external_ids
    (signal,) = AccountSignal.objects.filter(payload__intent_id=str(intent.id))
    assert signal.payload["outcome"] == Outcome.EXECUTION_SUCCEEDED


def test_a_second_intent_for_the_same_plan_step_finds_the_first_event(service, radicale, calendar_for, world):
    calendar_for(world.tenant)
    first, second = plan_step_intents(world, attempts=(1, 2))
    assert first.id != second.id
    assert first.effect_key == second.effect_key

    first = service.execute(first.id)
    second = service.execute(second.id)

    assert first.status == second.status == IntentStatus.SUCCEEDED
    assert first.external_ids == second.external_ids
    (vevent,) = vevents_in(radicale, first.external_ids["calendar_url"])
    assert str(vevent["UID"]) == event_uid(first.effect_key)
    # Both outcomes are on the plan's chain, which stays intact.
    assert len(ledger_entries(first, EventType.ACTION_EXECUTED)) == 1
    assert len(ledger_entries(second, EventType.ACTION_EXECUTED)) == 1
    assert ledger_entries(second, EventType.ACTION_EXECUTED)[0].plan_id == first.plan_id
    assert ledger.verify_ledger(plan_id=first.plan_id).ok


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_the_same_intent_from_two_workers_at_once_makes_one_event(service, make_intent, radicale, calendar_for, world):
    calendar_for(world.tenant)
    intent = make_intent(ACTION_TYPE)

    outcomes = run_together(service.execute, [(intent.id,), (intent.id,)])

    assert all(isinstance(outcome, ActionIntent) for outcome in outcomes), outcomes
    intent.refresh_from_db()
    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert intent.attempts == 1
    assert list(ExecutionAttempt.objects.filter(intent=intent).values_list("number", "outcome")) == [
        (1, AttemptOutcome.SUCCEEDED)
    ]
    (vevent,) = vevents_in(radicale, intent.external_ids["calendar_url"])
    assert str(vevent["UID"]) == event_uid(intent.effect_key)
    assert len(ledger_entries(intent, EventType.ACTION_EXECUTED)) == 1


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_two_intents_for_one_step_racing_make_one_event(service, radicale, calendar_for, world):
    """Two claims, two connector calls at once, on a tenant whose calendar does not exist yet.

    Both look for the calendar and both try to make it; both look for the event and both PUT it
    to <uid>.ics. The calendar and the event each end up made once.
    """
    calendar_for(world.tenant)
    first, second = plan_step_intents(world, attempts=(1, 2))

    outcomes = run_together(service.execute, [(first.id,), (second.id,)])

    assert all(isinstance(outcome, ActionIntent) for outcome in outcomes), outcomes
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == IntentStatus.SUCCEEDED, (first.failure_reason, second.failure_reason)
    # Both first tries succeed: losing the race to create the tenant's calendar is not an error.
    for intent in (first, second):
        assert list(ExecutionAttempt.objects.filter(intent=intent).values_list("number", "outcome", "error")) == [
            (1, AttemptOutcome.SUCCEEDED, "")
        ]
    assert first.external_ids["event_uid"] == second.external_ids["event_uid"] == event_uid(first.effect_key)
    (vevent,) = vevents_in(radicale, first.external_ids["calendar_url"])
    assert str(vevent["UID"]) == event_uid(first.effect_key)


def test_compensate_removes_the_event(service, make_intent, radicale, calendar_for, world):
    calendar_for(world.tenant)
    intent = service.execute(make_intent(ACTION_TYPE).id)
    calendar_url = intent.external_ids["calendar_url"]
    assert len(events_in(radicale, calendar_url)) == 1

    intent = service.compensate(intent.id, actor="user:approver")

    assert intent.compensated_at is not None
    assert events_in(radicale, calendar_url) == []
    (compensated,) = ledger_entries(intent, EventType.ACTION_COMPENSATED)
    assert compensated.actor == "user:approver"
    assert compensated.data["external_ids"] == intent.external_ids
    with pytest.raises(Conflict):
        service.compensate(intent.id, actor="user:approver")
    assert len(ledger_entries(intent, EventType.ACTION_COMPENSATED)) == 1


def test_an_unreachable_server_is_retried_then_fails_transient(service, sleeps, make_intent, world):
    unreachable_url = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    ConnectorConfig.objects.create(
        tenant=world.tenant, connector="calendar", settings={"url": unreachable_url, "timeout_seconds": 2}
    )
    intent = make_intent(ACTION_TYPE)

    intent = service.execute(intent.id)

    assert intent.status == IntentStatus.FAILED
    assert intent.failure_class == FailureClass.TRANSIENT
    assert f"gave up after {MAX_ATTEMPTS} tries" in intent.failure_reason
    assert intent.attempts == MAX_ATTEMPTS
    attempts = list(ExecutionAttempt.objects.filter(intent=intent))
    assert [row.outcome for row in attempts] == [AttemptOutcome.TRANSIENT_ERROR] * MAX_ATTEMPTS
    assert {row.error for row in attempts} == {
        "Could not connect to the CalDAV server (connection refused) while creating the draft meeting."
    }
    assert len(sleeps) == MAX_ATTEMPTS - 1
    assert len(ledger_entries(intent, EventType.ACTION_RETRY_SCHEDULED)) == MAX_ATTEMPTS - 1
    (failed,) = ledger_entries(intent, EventType.ACTION_FAILED)
    assert failed.reason_code == FailureClass.TRANSIENT
    (signal,) = AccountSignal.objects.filter(payload__intent_id=str(intent.id))
    assert signal.signal_type == "ACTION_FAILED"
    assert signal.payload["outcome"] == Outcome.EXECUTION_FAILED


def test_each_tenant_gets_its_own_calendar(service, make_intent, radicale, calendar_for, world, other_world):
    calendar_for(world.tenant)
    calendar_for(other_world.tenant)

    ours = service.execute(make_intent(ACTION_TYPE).id)
    theirs = service.execute(
        make_intent(ACTION_TYPE, account=other_world.account, approved_by=other_world.approver).id
    )

    assert ours.status == theirs.status == IntentStatus.SUCCEEDED
    assert ours.external_ids["calendar_url"] != theirs.external_ids["calendar_url"]
    assert ours.external_ids["calendar_url"].endswith(f"/revplan-{world.tenant.slug}/")
    assert theirs.external_ids["calendar_url"].endswith(f"/revplan-{other_world.tenant.slug}/")
    (our_event,) = vevents_in(radicale, ours.external_ids["calendar_url"])
    (their_event,) = vevents_in(radicale, theirs.external_ids["calendar_url"])
    assert str(our_event["UID"]) == event_uid(ours.effect_key)
    assert str(their_event["UID"]) == event_uid(theirs.effect_key)
    assert world.account.name in str(our_event["SUMMARY"])
    assert other_world.account.name in str(their_event["SUMMARY"])
