"""The orchestrator's rules (DESIGN §3.3, §4): which plans need attention, activation, runnable steps,
step attempts through the execution spine, and what a step's outcome does to its plan.

Celery-free on purpose: orchestrator.tasks calls these and does the enqueueing, so every rule here
runs the same in a unit test and in a worker.
"""
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef
from django.utils import timezone

from orchestrator import holds
from orchestrator.autonomy import budget, shadow
from orchestrator.autonomy.policy import Decision
from orchestrator.autonomy.services import decide_step
from orchestrator.execution.connectors import Connector, PermanentError, RoutingTable, build_connector
from orchestrator.execution.intents import step_intent_fields
from orchestrator.execution.models import FINISHED_INTENT_STATUSES, ActionIntent, IntentStatus
from orchestrator.execution.service import intent_create
from orchestrator.outcome_lock import StartSettings, read_batch_facts, start_settings
from plans import ledger, policy, services
from plans.errors import Conflict
from plans.evaluator import Outcome, evaluate
from plans.lifecycle import NON_TERMINAL, TERMINAL, StepMove
from plans.locking import lock_accounts, lock_plans
from plans.models import FINISHED_STEP_STATUSES, PauseKind, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.plan_types import get_plan_type_config
from plans.schemas import plan_to_schema
from plans.selectors import advance_facts, killed_by, plan_steps, steps_of_plans
from revplan.compiled import CompiledQuery

logger = logging.getLogger(__name__)

COMPONENT = "orchestrator"
ACTOR = ledger.system_actor(COMPONENT)
RETRY_LIMIT_EXCEEDED = "RETRY_LIMIT_EXCEEDED"
KILL_SWITCH = "KILL_SWITCH"


@dataclass(frozen=True)
class StepKey:
    """The idempotency key of one step attempt, and the arguments of execute_step."""

    plan_id: UUID
    step_id: UUID
    attempt: int


@dataclass(frozen=True)
class ClaimedStep:
    """A step attempt created already claimed by this worker (its intent EXECUTING under `token`): the
    worker carries it out next, in the same task (run_claimed), instead of sending a message."""

    key: StepKey
    intent: ActionIntent
    token: UUID
    connector: Connector | None = None


@dataclass(frozen=True)
class FollowUp:
    """What the task does once an advance or a step committed: send the step attempts it started, or
    (when the in-transaction advance failed) one advance_plan message; and run `inline` itself."""

    keys: list[StepKey] = field(default_factory=list)
    advance: bool = False
    inline: ClaimedStep | None = None


# A plan's attempts, read by every advance (compiled once: revplan.compiled).
_PLAN_INTENTS = CompiledQuery(lambda plan_id: ActionIntent.objects.filter(plan_id=plan_id), plan_id=uuid.uuid4())


# --- advance ------------------------------------------------------------------------------------


def advance_plan(plan_id: UUID) -> list[StepKey]:
    """Activate, settle or advance one plan in one transaction; returns the step attempts to enqueue (committed)."""
    return advance(plan_id).keys


def advance(plan_id: UUID, *, inline: bool = False) -> FollowUp:
    """advance_plan, as the task runs it: with `inline`, the first step it starts is created claimed by the
    caller, who runs it next (step_runner.run_inline), as a step's task runs the step after it (DESIGN §4);
    the other steps it starts are FollowUp.keys, to send."""
    return advance_many([plan_id], inline=inline).get(plan_id, FollowUp())


def advance_many(plan_ids: list[UUID], *, inline: bool = False) -> dict[UUID, FollowUp]:
    """advance() of several plans (a tick's batch: orchestrator.claims.advance_batches) in one transaction:
    their rows read, locked, their steps and attempts read in a statement each, one commit; each plan then
    advanced as if alone (its FollowUp by plan id; none for a plan that is gone or finished). Should the batch
    fail, each plan is advanced in a transaction of its own, so that one plan's error is only its own."""
    try:
        return _advance_batch(plan_ids, inline=inline, units=budget.Units())
    except budget.BudgetShort:
        logger.info("an autonomy budget ran short in an advance; advancing its plans one by one",
                    extra={"plan_ids": [str(plan_id) for plan_id in plan_ids]})
    except Exception:
        if len(plan_ids) == 1:
            raise
        logger.exception("batched advance failed; advancing its plans one by one",
                         extra={"plan_ids": [str(plan_id) for plan_id in plan_ids]})
    follow_ups = {}
    for plan_id in plan_ids:
        try:
            # Each budget unit taken as its step starts: the ones that find none left wait for a person.
            follow_ups.update(_advance_batch([plan_id], inline=inline, units=None))
        except Exception:
            # As a failed advance_plan task: the tick's claim brings the plan back (its re-enqueue guard).
            logger.exception("advance failed", extra={"plan_id": str(plan_id)})
    return follow_ups


def _advance_batch(plan_ids: list[UUID], *, inline: bool, units: budget.Units | None) -> dict[UUID, FollowUp]:
    """`units`: the autonomy budget units the batch's starts take, taken last, just before the commit
    (BudgetShort when one ran short: nothing of the batch is written). None: each as its step starts.
    The plans' ledger entries are written together, in one statement (ledger.held)."""
    with transaction.atomic(), ledger.held():
        rows = (RevenuePlan.objects.filter(pk__in=plan_ids).exclude(plan_status__in=TERMINAL)
                .values_list("pk", "plan_status", "account_id"))
        # An APPROVED plan may be activated, a PAUSED one run again (its global kill switch layer lifted):
        # its account is locked first, the order every move into ACTIVE takes.
        may_activate = {pk: account_id for pk, status, account_id in rows
                        if status in (PlanStatus.APPROVED, PlanStatus.PAUSED)}
        if not rows:
            return {}
        lock_accounts(may_activate.values())
        plans = lock_plans([pk for pk, _, _ in rows], also=ledger.chain_head_columns(OuterRef("pk")))
        ledger.note_chain_heads(plans)
        read_batch_facts(plans)
        steps = steps_of_plans(plans)
        intents = intents_of_plans([plan for plan in plans if _has_attempts(steps[plan.pk])])
        now = timezone.now()
        follow_ups = {plan.pk: advance_locked(plan, now=now, steps=steps[plan.pk], intents=intents.get(plan.pk, []),
                                               may_activate=plan.pk in may_activate, inline=inline, units=units)
                      for plan in plans}
        if units is not None:
            ledger.write_held()
            units.take_or_raise()
        return follow_ups


def intents_of_plans(plans: list[RevenuePlan]) -> dict[UUID, list[ActionIntent]]:
    """Every attempt of each plan, in one read (none for no plans)."""
    by_plan: dict[UUID, list[ActionIntent]] = {plan.pk: [] for plan in plans}
    if by_plan:
        for intent in ActionIntent.objects.filter(plan_id__in=list(by_plan)):
            by_plan[intent.plan_id].append(intent)
    return by_plan


def _has_attempts(steps: list[PlanStep]) -> bool:
    """Whether an advance has a use for the plan's attempts: only a PENDING step's current one counts (its
    outcome to apply, its redelivery, whether it ran on its own), and a step none was made for has none
    (attempts are numbered from 1, and a step's count is written with its attempt's row)."""
    return any(step.status == StepStatus.PENDING and step.attempts for step in steps)


def _activate_locked(plan: RevenuePlan, *, steps: list[PlanStep], switches: frozenset[str], owner_active: bool,
                     now: datetime) -> None:
    try:
        # The wake-up the first steps' start will set (advance_locked), written with the move: one UPDATE, not two.
        result = services.plan_activate_locked(plan, steps=steps, component=COMPONENT, engaged_switches=switches,
                                               owner_active=owner_active, next_run_at=_redelivery_wake(now))
    except Conflict as conflict:
        # Another plan of the type went ACTIVE between the gate and the save (the unique index saw it);
        # nothing was written, and `plan` holds the move that was not made.
        plan.refresh_from_db()
        reasons = [conflict.code]
    else:
        if result.can_activate:
            return
        reasons = list(result.codes)  # ledgered (once per change of reasons)
    # Look again later rather than on every tick.
    plan.next_run_at = now + timedelta(seconds=settings.ORCHESTRATOR_ACTIVATION_RECHECK_SECONDS)
    RevenuePlan.objects.filter(pk=plan.id).update(next_run_at=plan.next_run_at)
    logger.info("activation refused", extra={"plan_id": str(plan.id), "reasons": reasons})


def advance_locked(plan: RevenuePlan, *, now: datetime, steps: list[PlanStep] | None = None,
                    intents: list[ActionIntent] | None = None, may_activate: bool = False,
                    inline: bool = False, units: budget.Units | None = None) -> FollowUp:
    """The advance itself, for a caller holding the plan's row lock (and, when `may_activate`, its
    account's first: the plan may then move into ACTIVE) in an open transaction. `steps`, `intents`: the
    plan's steps and attempts if the caller has them. `inline`: the first step it starts is created claimed
    by the caller, who runs it next (FollowUp.inline); the others go to workers by message (FollowUp.keys).
    `units`: where the starts' autonomy budget units go, for the caller to take before it commits."""
    steps = plan_steps(plan) if steps is None else steps
    # One query for both: the kill switches, and whether the owner is still an active member (step gate).
    switches, owner_active, signals = advance_facts(plan)
    start = start_settings(plan)  # read with the lock of a step's success, if it was
    if plan.plan_status == PlanStatus.APPROVED and may_activate:
        _activate_locked(plan, steps=steps, switches=switches, owner_active=owner_active, now=now)
    if plan.plan_status == PlanStatus.PAUSED and may_activate and now < plan.expires_at:
        holds.lift_released_kill_layers(plan, switches=switches, steps=steps)
    if plan.plan_status != PlanStatus.ACTIVE:
        # DRAFT, APPROVED and PAUSED plans are never advanced; they only expire.
        if plan.plan_status in NON_TERMINAL and now >= plan.expires_at:
            evaluation = evaluate(plan_to_schema(plan, steps), signals=[], renewal_date=None, now=now)
            services.plan_settle_locked(plan, evaluation, steps=steps, component=COMPONENT)
        return FollowUp()
    config = get_plan_type_config(plan.plan_type, plan.plan_type_version)
    if intents is None:
        intents = _PLAN_INTENTS.all(plan_id=plan.id) if _has_attempts(steps) else []
    intents = {(intent.step_id, intent.attempt): intent for intent in intents}
    # Outcomes a worker finished but did not get to record (it died in between).
    for step in steps:
        intent = intents.get((step.step_id, step.attempts))
        if step.status == StepStatus.PENDING and intent and intent.status in FINISHED_INTENT_STATUSES:
            apply_outcome(plan, step, intent, config, now=now)
            if plan.plan_status != PlanStatus.ACTIVE:
                return FollowUp()
    evaluation = evaluate(
        plan_to_schema(plan, steps), signals=signals, renewal_date=plan.account.renewal_date, now=now
    )
    if evaluation.outcome != Outcome.CONTINUE:
        services.plan_settle_locked(plan, evaluation, steps=steps, component=COMPONENT)
        return FollowUp()
    failed_steps = [step for step in steps if step.status == StepStatus.FAILED]
    if failed_steps:
        holds.hold_for_failed_steps(plan, failed_steps)
        return FollowUp()
    tenant_killed_by = killed_by(switches)
    if tenant_killed_by:
        kind, scope = holds.kill_layer(switches)
        services.plan_pause_by_policy(
            plan_id=plan.id, component=COMPONENT, kind=kind, scope=scope, reason_code=KILL_SWITCH,
            explanation=f"Execution is switched off ({tenant_killed_by}); the plan runs on once it is back on.",
            facts={"killed_by": tenant_killed_by},
        )
        return FollowUp()
    to_enqueue, wake_at, claimed = [], [], None
    gate = None  # the step gate's facts, gathered when the first step is about to start
    finished = {step.step_id for step in steps if step.status in FINISHED_STEP_STATUSES}
    for step in sorted(steps, key=lambda s: s.sequence):
        if step.status != StepStatus.PENDING:
            continue
        intent = intents.get((step.step_id, step.attempts))
        if intent and intent.status not in FINISHED_INTENT_STATUSES:
            if _needs_redelivery(intent, now=now):
                if intent.status == IntentStatus.PENDING:
                    # Never started (its message was lost, or came while the plan was PAUSED): sending it
                    # now is its start, so the gate before every attempt applies — the owner, the
                    # approval's facts (they may have drifted while the plan was paused), expiry.
                    gate = gate or holds.step_gate_facts(plan, steps, now=now, owner_active=owner_active)
                    verdict = policy.check_step(plan, step, gate)
                    if not verdict.valid:
                        holds.hold_at_gate(plan, step, verdict, gate)
                        return FollowUp()
                to_enqueue.append(StepKey(plan.id, step.step_id, step.attempts))
            wake_at.append(_redelivery_wake(now))
            continue
        if not all(UUID(str(dependency)) in finished for dependency in step.depends_on):
            continue
        if step.next_attempt_at and step.next_attempt_at > now:
            wake_at.append(step.next_attempt_at)
            continue
        gate = gate or holds.step_gate_facts(plan, steps, now=now, owner_active=owner_active)
        started = _start_step(plan, step, previous=intent, switches=switches, gate=gate,
                              claim=inline and claimed is None, start=start, units=units)
        if started is None and plan.plan_status != PlanStatus.ACTIVE:
            return FollowUp()
        if isinstance(started, ClaimedStep):
            claimed = started
        elif started is not None:
            to_enqueue.append(started)
        if started is not None:
            wake_at.append(_redelivery_wake(now))
    # The tick's safety net: come back when a retry is due or a lost message should be re-sent;
    # a plan waiting only for people needs no tick at all. A wake-up already set a moment before this one
    # stands (the tick then looks a moment early, and finds nothing yet): a chain of steps run one after the
    # other writes it once a second, not once a step.
    wake = min(wake_at) if wake_at else None
    if wake is None or plan.next_run_at is None or not wake - _WAKE_SLACK <= plan.next_run_at <= wake:
        plan.next_run_at = wake
        RevenuePlan.objects.filter(pk=plan.id).update(next_run_at=wake)
    return FollowUp(keys=to_enqueue, inline=claimed)


_WAKE_SLACK = timedelta(seconds=1)


def _redelivery_wake(now: datetime) -> datetime:
    """When the tick looks again at a plan with a step attempt in flight: once its message could be lost."""
    return now + timedelta(seconds=settings.ORCHESTRATOR_REDELIVERY_SECONDS)


def _needs_redelivery(intent: ActionIntent, *, now: datetime) -> bool:
    """A PENDING attempt whose message seems lost, or an EXECUTING one whose worker's lease ran out."""
    if intent.status == IntentStatus.EXECUTING:
        return intent.lease_expires_at is not None and intent.lease_expires_at < now
    return intent.created_at < now - timedelta(seconds=settings.ORCHESTRATOR_REDELIVERY_SECONDS)


def _start_step(plan: RevenuePlan, step: PlanStep, *, previous: ActionIntent | None,
                switches: frozenset[str], gate: policy.StepGateFacts,
                claim: bool = False, start: StartSettings | None = None,
                units: budget.Units | None = None) -> StepKey | ClaimedStep | None:
    """Ask the autonomy policy (AutoApprovalPolicyV1), then wait for a person, stop, or create the next attempt
    (with `claim`, created claimed by the caller: a ClaimedStep).

    `previous`: the step's last attempt, if any; a retry of a step that ran on its own (the next attempt
    of a series, or a person's new series) does not take a second unit of the autonomy budget (the
    budget counts actions, not tries). `start`: the tenant's settings, if this transaction read them.
    `units`: see decide_step.
    """
    # The gate before every attempt (DESIGN §3.3): the owner, the approval's facts, expiry, the config.
    verdict = policy.check_step(plan, step, gate)
    if not verdict.valid:
        holds.hold_at_gate(plan, step, verdict, gate)
        return None
    retry_of_autonomous = bool(previous and previous.autonomy_decision.get("decision") == Decision.AUTO_EXECUTE)
    step_decision = decide_step(plan, step, budget_taken=retry_of_autonomous, engaged_switches=switches,
                                tenant_settings=start.autonomy if start else None, units=units)
    decision = step_decision.decision
    if decision.decision == Decision.BLOCK:
        kind, scope = (holds.kill_layer(switches, step.action_type) if decision.reason == KILL_SWITCH
                       else (PauseKind.POLICY, ""))
        services.plan_pause_by_policy(plan_id=plan.id, component=COMPONENT, kind=kind, scope=scope,
                                      reason_code=decision.reason, explanation=decision.explanation,
                                      facts={"step_id": str(step.step_id), **step_decision.as_dict()})
        plan.refresh_from_db(fields=["plan_status"])
        return None
    # A person's approval counts only for the content they approved (decide_step compared the digests).
    approved_by_id = step_decision.facts.approved_by_id
    if decision.decision == Decision.REQUIRE_APPROVAL and approved_by_id is None:
        services.step_transition(step, StepMove.AWAIT_APPROVAL, plan=plan)
        awaiting = ledger.step_awaiting_approval(plan, step=step, decision=step_decision.as_dict(), actor=ACTOR)
        if step_decision.shadow is not None:  # SHADOW mode: what the policy would have done, beside the person's
            shadow.record(plan, step, step_decision, awaiting=awaiting)
        return None
    attempt = step.attempts + 1
    token = uuid.uuid4() if claim else None
    connector = _connector_for(plan, step, routing=start.routing if start else None) if claim else None
    intent = intent_create(
        **step_intent_fields(plan, step),  # the same mapping the step's preview is built from
        approved_by_id=approved_by_id,
        approving_policy="" if approved_by_id is not None else decision.policy_version,
        attempt=attempt,
        autonomy_decision=step_decision.as_dict(),
        claimed_by=token,
        connector=connector.name if connector else "",
        plan_locked=True,
    )
    step.attempts, step.next_attempt_at = attempt, None  # written with the intent (plan_locked)
    ledger.step_attempt_started(plan, step=step, intent=intent, actor=ACTOR)
    logger.info("step attempt started", extra={"plan_id": str(plan.id), "step_id": str(step.step_id),
                                               "attempt": attempt, "action_type": step.action_type})
    key = StepKey(plan.id, step.step_id, attempt)
    if token is None or intent.lease_token != token:
        return key
    intent.plan, intent.account = plan, plan.account  # what the connector reads; the tenant is read if needed
    return ClaimedStep(key, intent, token, connector)


def _connector_for(plan: RevenuePlan, step: PlanStep, *, routing: RoutingTable | None) -> Connector | None:
    """The connector a step run in this task will use, built in the transaction that starts it; None when it
    cannot be built (the execution then builds it again and records why it failed, as for any attempt)."""
    try:
        # What routing reads (the tenant's routes and configs); the tenant row only for the calendar's slug.
        return build_connector(ActionIntent(tenant_id=plan.tenant_id, action_type=step.action_type), routing=routing)
    except PermanentError:
        return None


# --- outcomes ----------------------------------------------------------------------------------


def apply_outcome(plan: RevenuePlan, step: PlanStep, intent: ActionIntent, config, *, now: datetime) -> bool:
    """What a finished attempt does to its step (and, past the retry limit, to its plan). Idempotent."""
    if step.status != StepStatus.PENDING or step.attempts != intent.attempt or step.attempts_in_series == 0:
        return False  # not the step's current attempt (a person's retry began a series with none made yet)
    if intent.status == IntentStatus.SUCCEEDED:
        auto = intent.autonomy_decision.get("decision") == Decision.AUTO_EXECUTE
        services.step_transition(step, StepMove.AUTO_SUCCEED if auto else StepMove.SUCCEED, plan=plan,
                                 changes={"last_error": ""})
        return True
    if intent.status not in FINISHED_INTENT_STATUSES or step.next_attempt_at is not None:
        return False  # not finished yet, or this attempt's failure already scheduled the next one
    if config is None:
        # The plan runs on a plan-type version this deploy does not have (an older worker in a rolling
        # deploy): its retry rules are unknown here. Left unapplied; the next advance by a worker that knows
        # the version applies it (finished outcomes are picked up on every advance).
        logger.error("failed attempt left for a worker that knows the plan's plan-type version", extra={
            "plan_id": str(plan.id), "step_id": str(step.step_id), "attempt": intent.attempt,
            "plan_type": plan.plan_type, "plan_type_version": plan.plan_type_version})
        return False
    step.last_error = f"{intent.failure_class}: {intent.failure_reason}"[:2000]
    # The limit counts the attempts of the current series: a person's retry starts a new one.
    if step.attempts_in_series < config.retry_limit:
        delay = settings.ORCHESTRATOR_STEP_RETRY_BASE_SECONDS * 2 ** (step.attempts_in_series - 1)
        step.next_attempt_at = now + timedelta(seconds=delay)
        step.save(update_fields=["last_error", "next_attempt_at"])
        ledger.step_retry_scheduled(plan, step=step, attempt=step.attempts, error=step.last_error,
                                    next_attempt_at=step.next_attempt_at, actor=ACTOR)
        return True
    services.step_transition(step, StepMove.FAIL, plan=plan, changes={"last_error": step.last_error})
    stop = dict(
        plan_id=plan.id, component=COMPONENT, reason_code=RETRY_LIMIT_EXCEEDED,
        explanation=f"{step.action_type} failed {step.attempts_in_series} times in a row (the limit is "
                    f"{config.retry_limit}): {step.last_error}. Retry it, skip it (if optional), revise, or abort "
                    "the plan.",
        facts={"step_id": str(step.step_id), "attempts": step.attempts,
               "attempts_in_series": step.attempts_in_series, "last_error": step.last_error},
    )
    # A plan that moved while the attempt ran: a DRAFT one is approved afresh before it runs, a finished
    # one keeps the FAILED step as its record; neither can be held by a layer.
    if config.on_retry_limit == "ABORT" and plan.plan_status not in TERMINAL:
        services.plan_abort_by_policy(**stop)
    elif plan.plan_status in (PlanStatus.ACTIVE, PlanStatus.PAUSED):
        services.plan_pause_by_policy(**stop, kind=PauseKind.RETRY_LIMIT, scope=str(step.step_id))
    plan.refresh_from_db(fields=["plan_status"])
    return True
