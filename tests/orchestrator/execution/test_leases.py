"""orchestrator/execution/leases.py: the outcome and the try that ended the execution written together, only
for the claim's holder."""
import uuid

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator.execution import leases
from orchestrator.execution.models import ActionIntent, AttemptOutcome, ExecutionAttempt, IntentStatus


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
