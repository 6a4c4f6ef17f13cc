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
from orchestrator.execution.connectors import (
    Connector,
    ExternalRef,
    PermanentError,
    TransientError,
    build_connector,
)
from orchestrator.execution.connectors.base import ConnectorError
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
from plans import ledger, services
from plans.errors import Conflict, DomainError, NotFound
from plans.locking import lock_plan
from plans.models import RevenuePlan
from plans.plan_types import get_action_type
from plans.selectors import execution_killed_by, killed_by

# effect_key_for and intent_create live in intents.py; callers import them from here too.
__all__ = ["ExecutionBlocked", "ExecutionService", "effect_key_for", "intent_create"]

logger = logging.getLogger(__name__)

ACTOR = ledger.system_actor("execution")
KILL_SWITCH = "KILL_SWITCH"


class ExecutionBlocked(DomainError):
    """A kill switch stopped the intent before anything was sent; it stays PENDING for later."""

    http_status = 409


def _log_connector_error(error: ConnectorError, log: dict) -> None:
    """The raw text behind a classified failure, for whoever debugs it; rows only ever get str(error)."""
    logger.warning("connector error", extra={**log, "error": str(error), "http_status": error.http_status,
                                             "detail": error.detail, "error_class": type(error).__name__})


def _unexpected(intent: ActionIntent, error: Exception, doing: str) -> str:
    """A stored sentence for an exception no connector classified: its type only, its text is in the log."""
    connector = f"The {intent.connector} connector" if intent.connector else "The connector"
    return f"{connector} failed unexpectedly while {doing} ({type(error).__name__}); retrying cannot help."


def _log_fields(intent: ActionIntent) -> dict:
    return {"intent_id": str(intent.id), "plan_id": str(intent.plan_id or ""), "step_id": str(intent.step_id or ""),
            "attempt": intent.attempt, "action_type": intent.action_type}


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
        on_succeeded: Callable[[ActionIntent, RevenuePlan], None] | None = None,
        max_deliveries: int | None = None,
    ) -> ActionIntent:
        """`intent`: the caller's freshly loaded row of intent_id (with account and tenant), saving a read.

        `on_succeeded(intent, plan)`: for a plan step, called inside the transaction that records this
        execution's success, with the plan's row lock held; it commits (or rolls back) with the success.
        `max_deliveries`: give up (FAILED, WORKER_LOST) on an intent whose workers started it more often
        than this without finishing it, instead of starting it again.
        """
        intent = intent if intent is not None else self._load(intent_id)
        if intent.status in FINISHED_INTENT_STATUSES:
            return intent  # the recorded outcome; nothing is sent again
        if intent.expires_at <= self.clock():
            return self._expire(intent)
        # The kill switches, before the first try of this delivery; _claim and the connector's
        # set-up in between send nothing. Each retry below checks them again.
        self._raise_if_killed(intent)
        claim = leases.claim(intent, now=self.clock())  # on success, `intent` holds the claimed row's state
        if claim is None:
            return self._load(intent_id)  # another worker holds it, or it finished meanwhile
        if max_deliveries is not None and claim.deliveries > max_deliveries:
            reason = (f"a worker started it {claim.deliveries - 1} times and never finished; "
                      "giving up on this attempt")
            log = _log_fields(intent)
            logger.error("intent abandoned after repeated worker loss", extra={**log, "deliveries": claim.deliveries})
            return self._finish_failed(intent, claim, FailureClass.WORKER_LOST, reason, log)
        return self._run(intent, claim, on_succeeded=on_succeeded)

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
        claim = leases.Claim(intent.pk, token, deliveries=intent.deliveries, fresh=intent.attempts == 1)
        blocked_by = killed_by(engaged_switches, intent.action_type)
        if blocked_by:
            self._release_blocked(intent, claim, blocked_by, tries_made=0)
            raise ExecutionBlocked(KILL_SWITCH, f"{intent.action_type} was not sent: {blocked_by} is on.")
        return self._run(intent, claim, on_succeeded=on_succeeded, connector=connector)

    def _run(self, intent: ActionIntent, claim: leases.Claim, *, on_succeeded, connector=None) -> ActionIntent:
        """The tries of a claimed intent, and its outcome."""
        intent_id = intent.pk
        log = _log_fields(intent)
        try:
            connector = connector or build_connector(intent)
            intent.connector = connector.name
            connector.validate(intent)
        except PermanentError as error:
            _log_connector_error(error, log)
            return self._finish_failed(intent, claim, FailureClass.PERMANENT, str(error), log)
        except DatabaseError:
            raise  # ours, not the connector's: the delivery fails and is retried
        except Exception as error:
            # A bug or a setting nothing checked: fail now, not after the lease as WORKER_LOST.
            logger.exception("connector set-up raised unexpectedly", extra=log)
            return self._finish_failed(intent, claim, FailureClass.PERMANENT, _unexpected(intent, error, "preparing"),
                                       log)
        spec = get_action_type(intent.action_type)
        # Tries made before this delivery (by a worker that died); a fresh claim's count is its first try's.
        first = number = 0 if claim.fresh else intent.attempts
        delay, last_error = 0.0, ""
        holder = str(intent.plan_id or intent.id)  # who a half-open breaker lets through as its probe
        verdict = breakers.ALLOWED
        while number < spec.max_attempts:
            number += 1
            if delay:
                self.sleep(delay)
            # A fresh claim's row already counts its first try: that one needs no renewal.
            renewed = (claim.fresh and number == 1) or leases.renew(claim, attempts=number,
                                                                    connector=connector.name, now=self.clock())
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
                _log_connector_error(error, {**log, "try": number})
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
                _log_connector_error(error, {**log, "try": number})
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
                reason = _unexpected(intent, error, "carrying it out")
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
        with transaction.atomic():
            plan = self._lock_chain(intent)
            if not leases.finish(intent, claim, now=self.clock(), status=IntentStatus.SUCCEEDED, external_ids=ref.ids):
                logger.warning("stale worker's success refused; the claim had moved on", extra=log)
                return self._load(intent.pk)
            leases.record_last_try(last_try)
            ledger.action_executed(intent, actor=ACTOR, outcome=Outcome.EXECUTION_SUCCEEDED)
            self._signal(intent, "ACTION_EXECUTED", Outcome.EXECUTION_SUCCEEDED, {"external_ids": ref.ids})
            if on_succeeded is not None and plan is not None:
                on_succeeded(intent, plan)
        logger.info("action executed", extra={**log, "outcome": Outcome.EXECUTION_SUCCEEDED, "external_ids": ref.ids})
        return intent

    def _finish_failed(self, intent, claim, failure_class: str, reason: str, log, *, last_try=None) -> ActionIntent:
        with transaction.atomic():
            self._lock_chain(intent)
            finished = leases.finish(intent, claim, now=self.clock(), status=IntentStatus.FAILED,
                                     failure_class=failure_class, failure_reason=reason[:2000],
                                     connector=intent.connector)
            if not finished:
                logger.warning("stale worker's failure refused; the claim had moved on", extra=log)
                return self._load(intent.pk)
            leases.record_last_try(last_try)
            ledger.action_failed(intent, actor=ACTOR, outcome=Outcome.EXECUTION_FAILED)
            self._signal(intent, "ACTION_FAILED", Outcome.EXECUTION_FAILED,
                         {"failure_class": failure_class, "failure_reason": reason})
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

    def _raise_if_killed(self, intent: ActionIntent) -> None:
        blocked_by = execution_killed_by(intent.tenant_id, intent.action_type)
        if blocked_by:
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

    def _signal(self, intent: ActionIntent, signal_type: str, outcome: str, details: dict) -> None:
        services.outcome_signal_record(
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
