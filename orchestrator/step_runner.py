"""Running one step attempt (DESIGN §4): the execute_step message's, and the next step's in the same task.

A step's outcome is recorded, and its plan advanced, by orchestrator.engine in the outcome's own
transaction; with `inline` that advance creates the next step claimed by this worker, which runs it
next (run_claimed), within a budget (run_inline). Celery-free, like the engine.
"""
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import suppress

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef
from django.utils import timezone

from orchestrator import engine, holds, outcomes
from orchestrator.breakers.plans import BreakerOpen, hold_plan
from orchestrator.engine import KILL_SWITCH, ClaimedStep, FollowUp, StepKey
from orchestrator.execution import leases
from orchestrator.execution.models import FINISHED_INTENT_STATUSES, ActionIntent, IntentStatus
from orchestrator.execution.service import AfterSuccessFailed, ExecutionBlocked, ExecutionService
from plans import policy, services
from plans.errors import DomainError
from plans.lifecycle import TERMINAL
from plans.locking import lock_plan
from plans.models import PlanStatus, RevenuePlan
from plans.selectors import advance_facts, engaged_kill_switches, engaged_switches_of, plan_status_and_switches
from revplan.compiled import CompiledQuery

logger = logging.getLogger(__name__)


def execute_step(key: StepKey, *, service: ExecutionService | None = None, inline: bool = False) -> FollowUp:
    """Run one step attempt through the execution spine and advance its plan on from the outcome.

    `inline`: the next step the outcome starts is created claimed by the caller (FollowUp.inline), who
    runs it next with run_claimed (run_inline does both, within a budget)."""
    service = service or ExecutionService()
    # One transaction (one commit) for the read of the attempt and, when it runs now, everything before its
    # first try (ExecutionService.begin: the kill switches read here, the claim, the connector's routes).
    with transaction.atomic():
        intent = _read_attempt(key)
        move = _next_move(intent)
        begun = service.begin(intent, engaged_switches=frozenset(intent.engaged_switches),
                              max_deliveries=settings.ORCHESTRATOR_MAX_DELIVERIES) if move == _RUN else None
    if intent is None:
        logger.warning("no such step attempt", extra={"plan_id": str(key.plan_id), "step_id": str(key.step_id),
                                                      "attempt": key.attempt})
        return FollowUp()
    if move == _RECORD:
        return outcomes.record_step_outcome(intent.id, inline=inline)  # a duplicate or redelivered message
    if move == _CANCEL:
        _cancel_quietly(service, intent)
        return FollowUp()
    if move == _WAIT or (move == _GATE and not _gate_allows_late_start(key)):
        return FollowUp()
    # The switches read with the attempt hold for the transaction that read them (begun). After the late-start
    # gate (which may have waited for the plan's lock) execute reads them again before the first try.
    switches = frozenset(intent.engaged_switches) if begun is not None else None
    return _carry_out(key, intent, inline=inline, run=lambda on_succeeded: service.execute(
        intent.id, intent=intent, engaged_switches=switches, begun=begun, on_succeeded=on_succeeded,
        max_deliveries=settings.ORCHESTRATOR_MAX_DELIVERIES))


# What an execute_step message does with its attempt (_next_move).
_RUN, _RECORD, _CANCEL, _WAIT, _GATE = "run", "record", "cancel", "wait", "gate"


# One read for the intent, its plan's status, what the connector needs (account, its owner, tenant) and the
# tenant's engaged kill switches (the check before the first try). Compiled once (revplan.compiled).
_READ_ATTEMPT = CompiledQuery(
    lambda plan_id, step_id, attempt: ActionIntent.objects.select_related("plan", "account__owner", "tenant")
    .annotate(engaged_switches=engaged_switches_of(OuterRef("tenant_id")))
    .filter(plan_id=plan_id, step_id=step_id, attempt=attempt)[:1],
    plan_id=uuid.uuid4(), step_id=uuid.uuid4(), attempt=987_654_321,
)


def _read_attempt(key: StepKey) -> ActionIntent | None:
    return _READ_ATTEMPT.first(plan_id=key.plan_id, step_id=key.step_id, attempt=key.attempt)


def _next_move(intent: ActionIntent | None) -> str:
    if intent is None:
        return _WAIT
    if intent.status in FINISHED_INTENT_STATUSES:
        return _RECORD
    plan_status = intent.plan.plan_status
    if plan_status in TERMINAL:
        return _CANCEL
    if plan_status != PlanStatus.ACTIVE:
        return _WAIT  # a paused plan's attempt waits; the advance after resume sends it again
    paused_at = intent.plan.paused_at
    if intent.status == IntentStatus.PENDING and paused_at and paused_at > intent.created_at:
        return _GATE  # the gate runs again first (_gate_allows_late_start)
    return _RUN


def run_claimed(claimed: ClaimedStep, *, service: ExecutionService | None = None, inline: bool = False) -> FollowUp:
    """Carry out a step attempt this worker created claimed (FollowUp.inline) and advance its plan on.

    First, as the message path does before its claim: the plan must still be ACTIVE and no kill switch
    on — a person's abort or pause, or a switch, since the commit that created it wins. Then the attempt
    goes back to PENDING with nothing sent: cancelled if the plan ended, sent again by the advance after a
    resume, held by the switch's layer."""
    service = service or ExecutionService()
    log = {"plan_id": str(claimed.key.plan_id), "step_id": str(claimed.key.step_id), "attempt": claimed.key.attempt}
    status, switches = plan_status_and_switches(claimed.key.plan_id)
    if status != PlanStatus.ACTIVE:
        leases.release(leases.Claim(claimed.intent.pk, claimed.token), tries_made=0)
        logger.info("next step not run: the plan is no longer ACTIVE", extra={**log, "plan_status": status})
        if status in TERMINAL:
            _cancel_quietly(service, claimed.intent)
        return FollowUp()
    logger.info("running the next step in the same task", extra=log)
    return _carry_out(claimed.key, claimed.intent, inline=inline, run=lambda on_succeeded: service.execute_claimed(
        claimed.intent, claimed.token, engaged_switches=switches, connector=claimed.connector,
        on_succeeded=on_succeeded))


def run_inline(follow_up: FollowUp, *, send: Callable[[list[StepKey]], None], started: float | None = None,
               max_steps: int | None = None, seconds: float | None = None,
               service: ExecutionService | None = None) -> FollowUp:
    """Run the chain of steps `follow_up` claimed for this worker, one after the other, within a budget
    counted from `started` (the task's start, time.monotonic()): ORCHESTRATOR_INLINE_STEPS steps and
    ORCHESTRATOR_INLINE_SECONDS. No step starts past it: a claimed one is handed back (PENDING) and goes
    out by message like any other, so the task's time limit covers the last step it started. Steps
    started beside the one run here (parallel branches) are handed to `send` at once, for other workers
    to take. Returns what is left to send."""
    max_steps = settings.ORCHESTRATOR_INLINE_STEPS if max_steps is None else max_steps
    deadline = (time.monotonic() if started is None else started) + (
        settings.ORCHESTRATOR_INLINE_SECONDS if seconds is None else seconds)
    ran = 0
    while follow_up.inline is not None:
        if follow_up.keys:
            send(follow_up.keys)
        claimed = follow_up.inline
        if ran >= max_steps or time.monotonic() >= deadline:
            leases.release(leases.Claim(claimed.intent.pk, claimed.token), tries_made=0)
            return FollowUp(keys=[claimed.key])
        ran += 1
        within_budget = ran < max_steps and time.monotonic() < deadline
        follow_up = run_claimed(claimed, service=service, inline=within_budget)
    return follow_up


def _carry_out(key: StepKey, intent: ActionIntent, *, inline: bool,
               run: Callable[[Callable[[ActionIntent, RevenuePlan], None]], ActionIntent]) -> FollowUp:
    """`run(on_succeeded)` executes the intent; then its outcome is recorded and the plan advanced."""
    recorded, advance_failed = [], []

    def on_succeeded(finished: ActionIntent, plan: RevenuePlan) -> None:
        # In the success's own transaction, under the plan lock it already holds: one transaction,
        # one lock instead of two. A failure keeps the separate record_step_outcome below.
        try:
            recorded.append(outcomes.record_outcome_locked(plan, finished, inline=inline))
        except outcomes.AdvanceFailed as failed:
            advance_failed.append(failed)  # the success is recorded alone; the outcome below, without the advance
            raise AfterSuccessFailed(str(failed)) from failed

    try:
        run(on_succeeded)
    except ExecutionBlocked as blocked:
        with suppress(DomainError):  # the plan moved meanwhile (revised, aborted)
            kind, scope = holds.kill_layer(engaged_kill_switches(intent.tenant_id), intent.action_type)
            services.plan_pause_by_policy(plan_id=key.plan_id, component="execution", kind=kind, scope=scope,
                                          reason_code=KILL_SWITCH, explanation=blocked.detail,
                                          facts={"intent_id": str(intent.id)})
        return FollowUp()
    except BreakerOpen as stopped:  # nothing was sent; the attempt waits, PENDING, for the breaker to close
        hold_plan(plan_id=key.plan_id, stopped=stopped, intent_id=intent.id)
        return FollowUp()
    if not recorded:
        return outcomes.record_step_outcome(intent.id, inline=inline, advance=not advance_failed)
    if recorded[0] is None:
        return FollowUp()
    outcomes.outcome_recorded(intent)
    return recorded[0]


def _gate_allows_late_start(key: StepKey) -> bool:
    """The plan was paused after this attempt was made and has been resumed since: what it was approved
    on may have drifted meanwhile, so the gate before every attempt runs again before it starts (and
    holds the plan if it refuses). Rare, so its few queries do not weigh on a step's cost."""
    with transaction.atomic():
        plan = lock_plan(key.plan_id)
        if plan.plan_status != PlanStatus.ACTIVE:
            return False
        steps = list(plan.steps.all())
        step = next((step for step in steps if step.step_id == key.step_id), None)
        if step is None:
            return False
        owner_active = advance_facts(plan).owner_active
        gate = holds.step_gate_facts(plan, steps, now=timezone.now(), owner_active=owner_active)
        verdict = policy.check_step(plan, step, gate)
        if not verdict.valid:
            holds.hold_at_gate(plan, step, verdict, gate)
        return verdict.valid


def _cancel_quietly(service: ExecutionService, intent: ActionIntent) -> None:
    with suppress(DomainError):  # it started or finished meanwhile; its outcome stands
        service.cancel(intent.id, actor=engine.ACTOR)
