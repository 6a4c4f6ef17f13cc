"""A step attempt's outcome (DESIGN §4): applied to its step under the plan's row lock, and the plan advanced on
from it in the same transaction (engine.advance_locked), or by an advance message should that fail.

Celery-free, like the engine: the step runner calls these once an attempt has finished.
"""
import logging
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orchestrator import engine, metrics
from orchestrator.autonomy import budget
from orchestrator.engine import FollowUp
from orchestrator.execution.models import ActionIntent
from plans import ledger
from plans.locking import lock_plan
from plans.models import PlanStatus, RevenuePlan
from plans.plan_types import get_plan_type_config
from plans.selectors import plan_steps

logger = logging.getLogger(__name__)


class AdvanceFailed(Exception):
    """The advance after an outcome failed, leaving its transaction half made: the caller rolls it back, and the
    outcome is recorded again without the advance (record_step_outcome does both), which an advance message then
    makes (FollowUp.advance)."""


def record_step_outcome(intent_id: UUID, *, inline: bool = False, advance: bool = True) -> FollowUp:
    """Apply a finished attempt to its step and advance the plan on from it (`inline`: see engine.advance_locked).
    Should the advance fail (or with `advance` False), the outcome is applied alone and FollowUp.advance asks for
    an advance message."""
    if advance:
        try:
            return _record_step_outcome(intent_id, inline=inline, advance=True)
        except AdvanceFailed:
            pass
    return _record_step_outcome(intent_id, inline=False, advance=False)


def _record_step_outcome(intent_id: UUID, *, inline: bool, advance: bool) -> FollowUp:
    with transaction.atomic(), ledger.held():
        intent = ActionIntent.objects.get(pk=intent_id)
        plan = lock_plan(intent.plan_id)
        follow_up = record_outcome_locked(plan, intent, inline=inline, advance=advance)
    if follow_up is None:
        return FollowUp()
    outcome_recorded(intent)
    return follow_up


def record_outcome_locked(plan: RevenuePlan, intent: ActionIntent, *, inline: bool = False,
                          advance: bool = True) -> FollowUp | None:
    """record_step_outcome's work, for a caller that holds the plan's row lock in an open transaction.
    None when the outcome was applied before (a duplicate). AdvanceFailed when the advance after it failed:
    the caller rolls its transaction back and records the outcome again with `advance` False."""
    # Every step write holds the plan's row lock, which we hold: no lock on the step rows is needed.
    steps = plan_steps(plan)
    step = next((step for step in steps if step.step_id == intent.step_id), None)
    if step is None:
        # The plan was revised and the step removed while this attempt ran: its outcome has no step to go to.
        logger.warning("outcome of a step the plan no longer has", extra={
            "plan_id": str(plan.id), "step_id": str(intent.step_id), "attempt": intent.attempt})
        return None
    now = timezone.now()
    config = get_plan_type_config(plan.plan_type, plan.plan_type_version)
    if not engine.apply_outcome(plan, step, intent, config, now=now):
        return None
    if plan.plan_status != PlanStatus.ACTIVE:
        return FollowUp()
    if not advance:
        # The tick's safety net, should the advance message be lost.
        RevenuePlan.objects.filter(pk=plan.id).update(
            next_run_at=now + timedelta(seconds=settings.ORCHESTRATOR_REDELIVERY_SECONDS))
        return FollowUp(advance=True)
    # The next advance right here, under the lock and in the transaction the outcome commits with: no message,
    # no second lock, no re-reading the plan. No savepoint (two statements a step): should it fail, the whole
    # transaction is made again without it (AdvanceFailed).
    try:
        units = budget.Units()
        follow_up = engine.advance_locked(plan, now=now, steps=steps, inline=inline, units=units)
        ledger.write_held()
        units.take_or_raise()  # last: the budget rows are held for the commit only
    except Exception as error:
        log = {"plan_id": str(plan.id), "step_id": str(intent.step_id), "attempt": intent.attempt}
        if isinstance(error, budget.BudgetShort):
            # Its advance takes each unit as its step starts: the step that finds none left waits for a person.
            logger.info("an autonomy budget ran short for the next step; an advance message decides it again",
                        extra=log)
        else:
            logger.exception("follow-up advance failed; the outcome is recorded without it and an advance "
                             "message will retry it", extra=log)
        raise AdvanceFailed(str(error)) from error
    result = "steps_enqueued" if follow_up.keys or follow_up.inline else "nothing_to_run"
    transaction.on_commit(lambda: metrics.ADVANCES.labels(result).inc())
    return follow_up


def outcome_recorded(intent: ActionIntent) -> None:
    metrics.STEP_OUTCOMES.labels(intent.action_type, intent.status).inc()
    logger.info("step outcome recorded", extra={"plan_id": str(intent.plan_id), "step_id": str(intent.step_id),
                                                "attempt": intent.attempt, "outcome": intent.status})
