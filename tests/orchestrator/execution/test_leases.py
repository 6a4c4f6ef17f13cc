"""orchestrator/execution/leases.py: the outcome, the try that ended the execution and the outcome's signal written
together, only for the claim's holder."""
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator.execution import leases
from orchestrator.execution.models import ActionIntent, AttemptOutcome, ExecutionAttempt, IntentStatus
from plans import services
from plans.models import AccountSignal


def claimed(make_intent):
    intent = make_intent()
    claim = leases.claim(intent, now=timezone.now())
    assert claim is not None
    return intent, claim


def last_try(claim, *, error=""):
    now = timezone.now()
    return leases.attempt_row(claim, 1, 0.0, now, AttemptOutcome.SUCCEEDED, error, now=now,
                              external_ids={"record_id": "r-1"})


def test_the_holders_outcome_and_last_try_are_one_statement(make_intent):
    intent, claim = claimed(make_intent)
    with CaptureQueriesContext(connection) as queries:
        assert leases.finish(intent, claim, now=timezone.now(), last_try=last_try(claim),
                             status=IntentStatus.SUCCEEDED, external_ids={"record_id": "r-1"})
    assert len(queries) == 1
    row = ActionIntent.objects.get(pk=intent.pk)
    assert (row.status, row.lease_token, row.external_ids) == (IntentStatus.SUCCEEDED, None, {"record_id": "r-1"})
    assert intent.status == IntentStatus.SUCCEEDED  # the caller's instance has what was written
    attempt = ExecutionAttempt.objects.get(intent=intent)
    assert (attempt.number, attempt.outcome) == (1, AttemptOutcome.SUCCEEDED)
    assert attempt.external_ids == {"record_id": "r-1"}


def test_a_stale_workers_outcome_and_try_are_both_refused(make_intent):
    intent, _held = claimed(make_intent)
    stale = leases.Claim(intent.pk, uuid.uuid4())  # the claim moved on to another worker
    assert not leases.finish(intent, stale, now=timezone.now(), last_try=last_try(stale),
                             status=IntentStatus.SUCCEEDED)
    assert ActionIntent.objects.get(pk=intent.pk).status == IntentStatus.EXECUTING
    assert not ExecutionAttempt.objects.filter(intent=intent).exists()


def test_a_try_a_takeover_recorded_already_stands(make_intent):
    intent, claim = claimed(make_intent)
    last_try(claim, error="the takeover's record").save(force_insert=True)
    assert leases.finish(intent, claim, now=timezone.now(), last_try=last_try(claim, error="ours"),
                         status=IntentStatus.SUCCEEDED)
    assert list(ExecutionAttempt.objects.filter(intent=intent).values_list("error", flat=True)) == [
        "the takeover's record"]


def outcome_signal(intent):
    return services.outcome_signal_insert(account_id=intent.account_id, tenant_id=intent.tenant_id,
                                          signal_type="ACTION_EXECUTED", payload={"intent_id": str(intent.id)},
                                          observed_at=timezone.now(), component="execution")


def test_the_outcome_signal_is_written_by_the_finish_itself(make_intent):
    intent, claim = claimed(make_intent)
    with CaptureQueriesContext(connection) as queries:
        assert leases.finish(intent, claim, now=timezone.now(), last_try=last_try(claim),
                             writes=[outcome_signal(intent)], status=IntentStatus.SUCCEEDED)
    assert len(queries) == 1
    signal = AccountSignal.objects.get(account_id=intent.account_id, signal_type="ACTION_EXECUTED")
    assert signal.payload == {"intent_id": str(intent.id)}
    assert signal.recorded_by == "system:execution"


def test_a_stale_workers_outcome_signal_is_not_written(make_intent):
    intent, _held = claimed(make_intent)
    stale = leases.Claim(intent.pk, uuid.uuid4())
    assert not leases.finish(intent, stale, now=timezone.now(), last_try=last_try(stale),
                             writes=[outcome_signal(intent)], status=IntentStatus.SUCCEEDED)
    assert not AccountSignal.objects.filter(account_id=intent.account_id, signal_type="ACTION_EXECUTED").exists()


def test_an_outside_signal_type_is_no_outcome_signal(make_intent):
    intent = make_intent()
    with pytest.raises(ValueError, match="not an outcome signal"):
        services.outcome_signal_insert(account_id=intent.account_id, tenant_id=intent.tenant_id,
                                       signal_type="RENEWAL_COMMITTED", payload={}, observed_at=timezone.now(),
                                       component="execution")
