"""ExecutionService: carry out an approved ActionIntent exactly once, never re-deciding (DESIGN §5).

One execution per intent: a worker claims the intent with a conditional UPDATE that hands it a
lease token; every later write is conditional on that token, so a second caller, a redelivered
message or a worker that stalled past its lease cannot record a second outcome. The connector
sends `intent.effect_key` outside, so an effect made before a crash is found, not made again.
"""
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from orchestrator.breakers import plans as breaker_plans
from orchestrator.breakers import services as breakers
from orchestrator.execution import compensation, leases
from orchestrator.execution.connectors import Connector, ExternalRef, PermanentError, TransientError
from orchestrator.execution.delivery import (
    Begun,
    begin_delivery,
    log_connector_error,
    log_fields,
    prepare_connector,
    unexpected,
)
from orchestrator.execution.intents import effect_key_for, intent_create
from orchestrator.execution.models import (
    FINISHED_INTENT_STATUSES,
    ActionIntent,
    AttemptOutcome,
    FailureClass,
    IntentStatus,
    Outcome,
)
from orchestrator.execution.retry import backoff_delay
from orchestrator.outcome_lock import lock_for_outcome
from plans import ledger, services
from plans.errors import Conflict, DomainError, NotFound
from plans.locking import lock_plan
from plans.models import RevenuePlan
from plans.plan_types import get_action_type
from plans.selectors import execution_killed_by, killed_by

# effect_key_for and intent_create live in intents.py; callers import them from here too.
__all__ = ["Begun", "ExecutionBlocked", "ExecutionService", "effect_key_for", "intent_create"]

logger = logging.getLogger(__name__)

ACTOR = ledger.system_actor("execution")
KILL_SWITCH = "KILL_SWITCH"


class AfterSuccessFailed(Exception):
    """Raised by an on_succeeded callback whose work failed part way: the success's transaction is rolled back,
    and the success recorded again without the callback."""


class ExecutionBlocked(DomainError):
    """A kill switch stopped the intent before anything was sent; it stays PENDING for later."""

    http_status = 409


class ExecutionService:
    """execute / cancel / compensate. Clock, sleep and randomness are injectable for tests."""

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = timezone.now,
        rng: random.Random | None = None,
    ):
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()

    # --- execute -------------------------------------------------------------------------------

    def execute(
        self,
        intent_id: UUID,
        *,
        intent: ActionIntent | None = None,
        engaged_switches: frozenset[str] | None = None,
        begun: Begun | None = None,
        on_succeeded: Callable[[ActionIntent, RevenuePlan], None] | None = None,
        max_deliveries: int | None = None,
    ) -> ActionIntent:
        """`intent`: the caller's freshly loaded row of intent_id (with account and tenant), saving a read.

        `engaged_switches`: the tenant's kill switches, read by the caller with `intent` (else read here).
        `begun`: what the caller's begin(intent) returned, in a transaction of its own that has committed.
        `on_succeeded(intent, plan)`: for a plan step, called inside the transaction that records this
        execution's success, with the plan's row lock held; it commits (or rolls back) with the success.
        `max_deliveries`: give up (FAILED, WORKER_LOST) on an intent whose workers started it more often
        than this without finishing it, instead of starting it again.
        """
        intent = intent if intent is not None else self._load(intent_id)
        if begun is None:
            if intent.status in FINISHED_INTENT_STATUSES:
                return intent  # the recorded outcome; nothing is sent again
            if intent.expires_at <= self.clock():
                return self._expire(intent)
            with transaction.atomic():
                begun = begin_delivery(intent, now=self.clock(), engaged_switches=engaged_switches,
                                       max_deliveries=max_deliveries)
        if begun.blocked_by:
            self._record_blocked(intent, begun.blocked_by)
        if begun.claim is None:
            return self._load(intent_id)  # another worker holds it, or it finished meanwhile
        log = log_fields(intent)
        if begun.abandoned:
            reason = (f"a worker started it {begun.claim.deliveries - 1} times and never finished; "
                      "giving up on this attempt")
            logger.error("intent abandoned after repeated worker loss",
                         extra={**log, "deliveries": begun.claim.deliveries})
            return self._finish_failed(intent, begun.claim, FailureClass.WORKER_LOST, reason, log)
        if begun.connector is None:
            return self._finish_failed(intent, begun.claim, FailureClass.PERMANENT, begun.failure, log)
        return self._run(intent, begun.claim, on_succeeded=on_succeeded, connector=begun.connector)

    def begin(self, intent: ActionIntent, *, engaged_switches: frozenset[str] | None = None,
              max_deliveries: int | None = None) -> Begun | None:
        """The part of execute before the first try, for a caller that wants it in its own transaction
        (the one that read `intent`: one commit for both), which must commit before execute(begun=...).
        None when the intent finished or expired: execute, without `begun`, returns or records that."""
        if intent.status in FINISHED_INTENT_STATUSES or intent.expires_at <= self.clock():
            return None
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("begin runs inside the caller's transaction")
        return begin_delivery(intent, now=self.clock(), engaged_switches=engaged_switches,
                              max_deliveries=max_deliveries)

    def execute_claimed(
        self,
        intent: ActionIntent,
        token: UUID,
        *,
        engaged_switches: frozenset[str],
        connector: Connector | None = None,
        on_succeeded: Callable[[ActionIntent, RevenuePlan], None] | None = None,
    ) -> ActionIntent:
        """Carry out an intent created already claimed by this worker with `token` (a plan's next step, run
        by the worker that finished the one before it: intents.intent_create(claimed_by=...)).

        `engaged_switches`: the tenant's kill switches, read by the caller after the commit that created
        the intent — the check before the first try, as execute makes it: a switch flipped since the
        intent was made hands it back (PENDING, ExecutionBlocked) with nothing sent. `connector`: built
        in the transaction that created it, saving a read of the routes. From here on it is the same
        execution: each try renews the lease, each outcome is conditional on the token, a worker that
        dies leaves it for a takeover once the lease has run out.
        """
        claim = leases.Claim(intent.pk, token, deliveries=intent.deliveries, counted=1 if intent.attempts == 1 else 0)
        blocked_by = killed_by(engaged_switches, intent.action_type)
        if blocked_by:
            self._release_blocked(intent, claim, blocked_by, tries_made=0)
            raise ExecutionBlocked(KILL_SWITCH, f"{intent.action_type} was not sent: {blocked_by} is on.")
        return self._run(intent, claim, on_succeeded=on_succeeded, connector=connector)

    def _run(self, intent: ActionIntent, claim: leases.Claim, *, on_succeeded, connector=None) -> ActionIntent:
        """The tries of a claimed intent, and its outcome. `connector`: built and checked by the caller."""
        intent_id = intent.pk
        log = log_fields(intent)
        if connector is None:
            connector, failure = prepare_connector(intent)
            if connector is None:
                return self._finish_failed(intent, claim, FailureClass.PERMANENT, failure, log)
        else:
            intent.connector = connector.name
        spec = get_action_type(intent.action_type)
        # Tries made before this delivery (by a worker that died); a counted try is this delivery's first.
        first = number = claim.counted - 1 if claim.counted else intent.attempts
        delay, last_error = 0.0, ""
        holder = str(intent.plan_id or intent.id)  # who a half-open breaker lets through as its probe
        verdict = breakers.ALLOWED
        while number < spec.max_attempts:
            number += 1
            if delay:
                self.sleep(delay)
            # A try the row already counts (claim.counted) needs no renewal.
            renewed = number == claim.counted or leases.renew(claim, attempts=number, connector=connector.name,
                                                              now=self.clock())
            if not renewed:
                logger.warning("execution claim lost; another worker took over", extra=log)
                return self._load(intent_id)
            intent.attempts = number
            # A retry: a switch may have been flipped since the check before the first try.
            blocked_by = execution_killed_by(intent.tenant_id, intent.action_type) if number > first + 1 else ""
            if blocked_by:
                self._release_blocked(intent, claim, blocked_by, tries_made=number - 1)
                raise ExecutionBlocked(KILL_SWITCH, f"{intent.action_type} was not sent: {blocked_by} is on.")
            # The connector's circuit breaker, before every try (closed: one Redis GET, no query).
            verdict = breakers.gate(intent.tenant_id, connector.name, holder=holder)
            if not verdict.allowed:
                self._stop_for_breaker(intent, claim, connector.name, verdict.state, tries_made=number - 1)
            started_at = self.clock()
            try:
                ref = connector.execute(intent)
            except TransientError as error:
                log_connector_error(error, {**log, "try": number})
                last_error = str(error)
                leases.record_try(claim, number, delay, started_at, AttemptOutcome.TRANSIENT_ERROR, last_error,
                                  now=self.clock())
                after = breakers.record(intent.tenant_id, connector.name, AttemptOutcome.TRANSIENT_ERROR,
                                        holder=holder, probe=verdict.probe, error=last_error)
                if number >= spec.max_attempts:
                    break
                if not after.allowed:  # this failure opened it (or it opened meanwhile): no retry is spent
                    self._stop_for_breaker(intent, claim, connector.name, after.state, tries_made=number)
                delay = backoff_delay(
                    number + 1,
                    base=settings.REVPLAN_RETRY_BASE_SECONDS,
                    cap=settings.REVPLAN_RETRY_MAX_DELAY_SECONDS,
                    retry_after=error.retry_after,
                    rng=self.rng,
                )
                self._ledger_retry(intent, number, last_error, delay)
                logger.info("transient connector error; retrying", extra={**log, "try": number, "delay": delay,
                                                                         "error": last_error})
                continue
            except PermanentError as error:
                log_connector_error(error, {**log, "try": number})
                breakers.record(intent.tenant_id, connector.name, AttemptOutcome.PERMANENT_ERROR, holder=holder,
                                probe=verdict.probe, error=str(error))
                last_try = leases.attempt_row(claim, number, delay, started_at, AttemptOutcome.PERMANENT_ERROR,
                                              str(error), now=self.clock())
                return self._finish_failed(intent, claim, FailureClass.PERMANENT, str(error), log, last_try=last_try)
            except (DatabaseError, SoftTimeLimitExceeded):
                # Ours, not the connector's: the delivery fails (the task's time limit: the lease's takeover
                # then finds whatever effect the call made under its effect key).
                raise
            except Exception as error:
                # E.g. a 2xx answer the connector cannot read. Recorded as this try's permanent failure
                # now; escaping would leave the intent EXECUTING until its lease ran out.
                logger.exception("connector raised unexpectedly", extra={**log, "try": number})
                reason = unexpected(intent, error, "carrying it out")
                breakers.record(intent.tenant_id, connector.name, AttemptOutcome.PERMANENT_ERROR, holder=holder,
                                probe=verdict.probe, error=reason)
                last_try = leases.attempt_row(claim, number, delay, started_at, AttemptOutcome.PERMANENT_ERROR, reason,
                                              now=self.clock())
                return self._finish_failed(intent, claim, FailureClass.PERMANENT, reason, log, last_try=last_try)
            breakers.record(intent.tenant_id, connector.name, AttemptOutcome.SUCCEEDED, holder=holder,
                            probe=verdict.probe)
            last_try = leases.attempt_row(claim, number, delay, started_at, AttemptOutcome.SUCCEEDED, "",
                                          now=self.clock(), external_ids=ref.ids)
            return self._finish_succeeded(intent, claim, ref, log, last_try=last_try, on_succeeded=on_succeeded)
        if number == first:
            # No try left for this delivery: the last one was made by a worker that died before its outcome.
            reason = f"gave up after {number} tries; the worker of the last one was lost before it finished the intent"
            return self._finish_failed(intent, claim, FailureClass.WORKER_LOST, reason, log)
        reason = f"gave up after {number} tries; last error: {last_error}"
        return self._finish_failed(intent, claim, FailureClass.TRANSIENT, reason, log)

    # --- cancel and compensate ------------------------------------------------------------------

    def cancel(self, intent_id: UUID, *, actor: str) -> ActionIntent:
        """Only an intent that has not started can be cancelled; a running one is stopped by a kill switch."""
        intent = self._load(intent_id)
        with transaction.atomic():
            self._lock_chain(intent)
            cancelled = ActionIntent.objects.filter(pk=intent_id, status=IntentStatus.PENDING).update(
                status=IntentStatus.CANCELLED, failure_class=FailureClass.CANCELLED,
                failure_reason=f"cancelled by {actor}", finished_at=self.clock(),
            )
            if not cancelled:
                raise Conflict("INTENT_NOT_CANCELLABLE", f"The intent is {self._load(intent_id).status}; only a "
                                                         "PENDING intent can be cancelled.")
            intent = self._load(intent_id)
            ledger.action_cancelled(intent, actor=actor)
        return intent

    def compensate(self, intent_id: UUID, *, actor: str) -> ActionIntent:
        """Undo a succeeded intent's effect through its connector (compensation.compensate: the reversible
        connectors; Conflict for one that cannot be undone, CompensationFailed when the connector failed)."""
        undo = compensation.compensate(self._load(intent_id), actor=actor, clock=self.clock)
        if not undo.undone:
            raise compensation.CompensationFailed(compensation.COMPENSATION_FAILED, f"{undo.reason}.")
        return undo.intent

    # --- outcomes --------------------------------------------------------------------------------

    def _finish_succeeded(self, intent, claim, ref: ExternalRef, log, *, last_try=None,
                          on_succeeded=None) -> ActionIntent:
        """`on_succeeded(intent, plan)`: more work in the success's transaction, under the plan's lock. Should it
        raise AfterSuccessFailed, the transaction is rolled back and the success recorded alone."""
        try:
            return self._record_success(intent, claim, ref, log, last_try=last_try, on_succeeded=on_succeeded)
        except AfterSuccessFailed:
            return self._record_success(intent, claim, ref, log, last_try=last_try, on_succeeded=None)

    def _record_success(self, intent, claim, ref: ExternalRef, log, *, last_try, on_succeeded) -> ActionIntent:
        # ACTION_EXECUTED and what on_succeeded appends (the next step's start) in one statement (ledger.held).
        with transaction.atomic(), ledger.held():
            plan = lock_for_outcome(intent)
            signal = self._signal(intent, "ACTION_EXECUTED", Outcome.EXECUTION_SUCCEEDED, {"external_ids": ref.ids})
            if not leases.finish(intent, claim, now=self.clock(), last_try=last_try, writes=[signal],
                                 status=IntentStatus.SUCCEEDED, external_ids=ref.ids):
                logger.warning("stale worker's success refused; the claim had moved on", extra=log)
                return self._load(intent.pk)
            ledger.action_executed(intent, actor=ACTOR, outcome=Outcome.EXECUTION_SUCCEEDED)
            if on_succeeded is not None and plan is not None:
                on_succeeded(intent, plan)
        logger.info("action executed", extra={**log, "outcome": Outcome.EXECUTION_SUCCEEDED, "external_ids": ref.ids})
        return intent

    def _finish_failed(self, intent, claim, failure_class: str, reason: str, log, *, last_try=None) -> ActionIntent:
        with transaction.atomic():
            self._lock_chain(intent)
            signal = self._signal(intent, "ACTION_FAILED", Outcome.EXECUTION_FAILED,
                                  {"failure_class": failure_class, "failure_reason": reason})
            finished = leases.finish(intent, claim, now=self.clock(), last_try=last_try, writes=[signal],
                                     status=IntentStatus.FAILED, failure_class=failure_class,
                                     failure_reason=reason[:2000], connector=intent.connector)
            if not finished:
                logger.warning("stale worker's failure refused; the claim had moved on", extra=log)
                return self._load(intent.pk)
            ledger.action_failed(intent, actor=ACTOR, outcome=Outcome.EXECUTION_FAILED)
        logger.warning("action failed", extra={**log, "outcome": Outcome.EXECUTION_FAILED,
                                                "failure_class": failure_class, "reason": reason})
        return intent

    def _expire(self, intent: ActionIntent) -> ActionIntent:
        with transaction.atomic():
            self._lock_chain(intent)
            if leases.finish(intent, None, now=self.clock(), status=IntentStatus.EXPIRED,
                             failure_class=FailureClass.EXPIRED,
                             failure_reason="the approval expired before the action ran"):
                intent = self._load(intent.pk)
                ledger.action_expired(intent, actor=ACTOR)
        return self._load(intent.pk)

    def _record_blocked(self, intent: ActionIntent, blocked_by: str) -> None:
        """A switch was on before the first try: nothing was claimed or sent; the intent stays PENDING."""
        with transaction.atomic():
            self._lock_chain(intent)
            ledger.action_blocked(intent, actor=ACTOR, blocked_by=blocked_by)
        raise ExecutionBlocked(KILL_SWITCH, f"{intent.action_type} was not sent: {blocked_by} is on.")

    def _release_blocked(self, intent: ActionIntent, claim: leases.Claim, blocked_by: str, *,
                         tries_made: int) -> None:
        """A switch flipped before a try: hand the intent back (PENDING) so it can run once released."""
        with transaction.atomic():
            self._lock_chain(intent)
            if leases.release(claim, tries_made=tries_made):
                ledger.action_blocked(intent, actor=ACTOR, blocked_by=blocked_by)

    @staticmethod
    def _stop_for_breaker(intent: ActionIntent, claim: leases.Claim, connector: str, state: str, *, tries_made: int):
        """The breaker says no: the intent goes back to PENDING (sent once it closes) and BreakerOpen tells
        the caller to hold its plan [BREAKER]."""
        breaker_plans.hand_back(intent.pk, claim.token, tries_made=tries_made)
        raise breaker_plans.refusal(connector, state, intent.action_type)

    def _ledger_retry(self, intent: ActionIntent, number: int, error: str, delay: float) -> None:
        with transaction.atomic():
            self._lock_chain(intent)
            ledger.action_retry_scheduled(intent, actor=ACTOR, attempt_number=number, error=error, delay_seconds=delay)

    def _signal(self, intent: ActionIntent, signal_type: str, outcome: str, details: dict):
        """The outcome's signal, for leases.finish to write with it."""
        return services.outcome_signal_insert(
            account_id=intent.account_id,
            tenant_id=intent.tenant_id,
            signal_type=signal_type,
            component="execution",
            observed_at=self.clock(),
            payload={
                "intent_id": str(intent.id),
                "action_type": intent.action_type,
                "outcome": outcome,
                "plan_id": str(intent.plan_id) if intent.plan_id else None,
                "step_id": str(intent.step_id) if intent.step_id else None,
                **details,
            },
        )

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _lock_chain(intent: ActionIntent) -> RevenuePlan | None:
        """A plan step's ledger entries join the plan's chain, which its row lock serialises."""
        return lock_plan(intent.plan_id) if intent.plan_id else None

    @staticmethod
    def _load(intent_id: UUID) -> ActionIntent:
        intent = ActionIntent.objects.select_related("account__owner", "tenant").filter(pk=intent_id).first()
        if intent is None:
            raise NotFound("NOT_FOUND", f"Action intent {intent_id} does not exist.")
        return intent
