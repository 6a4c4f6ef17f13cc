"""Writers for the execution spine's events about one action intent."""
from plans.ledger.chain import append
from plans.models import EventType


def _intent_entry(intent, event_type: EventType, *, actor: str, reason_code: str, explanation: str, data: dict):
    """Action events go to the plan's chain when the intent comes from a step, else the tenant's.

    The caller holds the plan's row lock (plans.locking.lock_plan) for plan-step intents.
    """
    return append(
        tenant_id=intent.tenant_id,
        plan_id=intent.plan_id,
        step_id=intent.step_id,
        event_type=event_type,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation,
        data={
            "intent_id": str(intent.id),
            "action_type": intent.action_type,
            "account_id": str(intent.account_id),
            "attempt": intent.attempt,
            **data,
        },
    )


def action_retry_scheduled(intent, *, actor: str, attempt_number: int, error: str, delay_seconds: float):
    return _intent_entry(
        intent, EventType.ACTION_RETRY_SCHEDULED, actor=actor, reason_code="TRANSIENT_ERROR",
        explanation=f"Try {attempt_number} of {intent.action_type} failed ({error}); trying again in "
        f"{delay_seconds:.2f}s.",
        data={"attempt_number": attempt_number, "error": error, "delay_seconds": delay_seconds},
    )


def action_executed(intent, *, actor: str, outcome: str):
    return _intent_entry(
        intent, EventType.ACTION_EXECUTED, actor=actor, reason_code=outcome,
        explanation=f"{intent.action_type} done through the {intent.connector} connector after "
        f"{intent.attempts} try(s).",
        data={"outcome": outcome, "external_ids": intent.external_ids, "attempts": intent.attempts},
    )


def action_failed(intent, *, actor: str, outcome: str):
    return _intent_entry(
        intent, EventType.ACTION_FAILED, actor=actor, reason_code=intent.failure_class,
        explanation=f"{intent.action_type} failed ({intent.failure_class}): {intent.failure_reason}",
        data={"outcome": outcome, "failure_class": intent.failure_class, "failure_reason": intent.failure_reason,
              "attempts": intent.attempts},
    )


def action_blocked(intent, *, actor: str, blocked_by: str):
    return _intent_entry(
        intent, EventType.ACTION_BLOCKED, actor=actor, reason_code="KILL_SWITCH",
        explanation=f"{intent.action_type} was not sent: {blocked_by} is on.",
        data={"blocked_by": blocked_by},
    )


def action_expired(intent, *, actor: str):
    return _intent_entry(
        intent, EventType.ACTION_EXPIRED, actor=actor, reason_code="EXPIRED",
        explanation=f"{intent.action_type} was not sent: its approval expired at {intent.expires_at.isoformat()}.",
        data={"expires_at": intent.expires_at.isoformat()},
    )


def action_cancelled(intent, *, actor: str, reason: str = ""):
    because = f": {reason.rstrip('.')}" if reason else ""
    return _intent_entry(
        intent, EventType.ACTION_CANCELLED, actor=actor, reason_code="CANCELLED",
        explanation=f"{intent.action_type} was cancelled before it ran{because}.", data={"reason": reason},
    )


def action_compensated(intent, *, actor: str, reason: str = ""):
    because = f" ({reason.rstrip('.')})" if reason else ""
    return _intent_entry(
        intent, EventType.ACTION_COMPENSATED, actor=actor, reason_code="COMPENSATED",
        explanation=f"{intent.action_type} was undone through the {intent.connector} connector{because}.",
        data={"external_ids": intent.external_ids, "reason": reason},
    )


# Its own event type, not ACTION_FAILED: the action did run, and what failed is the undo (counts of failed
# actions must not include it). `failure` is the connector's classified sentence, never its raw text.
COMPENSATION_FAILED = "COMPENSATION_FAILED"


def action_compensation_failed(intent, *, actor: str, failure: str):
    return _intent_entry(
        intent, EventType.ACTION_COMPENSATION_FAILED, actor=actor, reason_code=COMPENSATION_FAILED,
        explanation=f"{intent.action_type} could not be undone through the {intent.connector} connector: "
                    f"{failure.rstrip('.')}. Its effect stands.",
        data={"undo": True, "failure_reason": failure, "external_ids": intent.external_ids},
    )
