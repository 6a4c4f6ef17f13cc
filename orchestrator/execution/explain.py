"""Plain sentences about an intent's state, for people reading the status API (no stack traces)."""
from orchestrator.execution.models import ActionIntent, FailureClass, IntentStatus

_FAILURES = {
    FailureClass.TRANSIENT: "the connector kept failing with usually temporary errors, and the retries ran out",
    FailureClass.PERMANENT: "the connector refused it in a way that retrying cannot fix",
    FailureClass.EXPIRED: "its approval expired before it could run",
    FailureClass.CANCELLED: "it was cancelled before it ran",
}


def explain_intent(intent: ActionIntent) -> str:
    action = intent.action_type.replace("_", " ").lower()
    if intent.status == IntentStatus.PENDING:
        return f"The {action} is approved and waiting to run (until {intent.expires_at:%Y-%m-%d %H:%M} UTC)."
    if intent.status == IntentStatus.EXECUTING:
        return f"The {action} is running now (try {intent.attempts or 1})."
    if intent.status == IntentStatus.SUCCEEDED:
        undone = " It was undone afterwards." if intent.compensated_at else ""
        return f"The {action} was done through the {intent.connector} connector in {intent.attempts} try(s).{undone}"
    why = _FAILURES.get(intent.failure_class, "it did not complete")
    detail = f" ({intent.failure_reason})" if intent.failure_reason else ""
    return f"The {action} did not happen: {why}{detail}."


# --- one sentence per outcome (the status API's `outcome`) ----------------------------------------

_CONNECTOR_NAMES = {"crm": "the CRM", "calendar": "the calendar", "internal": "revplan's own records"}


def ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def duration(seconds: float) -> str:
    """A span as people say it: '40 s', '2 min', '3 h', '2 days'."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"


def _sentence_of(reason: str) -> str:
    """A stored classified reason as the middle of a sentence: no capital, no final stop."""
    reason = reason.strip().rstrip(".")
    # "The CRM answered …" → "the CRM answered …"; an acronym first ("CRM …") keeps its capitals.
    return reason[:1].lower() + reason[1:] if reason[1:2].islower() else reason


def outcome_sentence(intent: ActionIntent, tries: list | None = None) -> str:
    """One sentence for where the intent ended up, its connector tries summarised. `tries`: its recorded
    ExecutionAttempt rows if at hand (they tell "on all 4 tries" from "on the last of 4 tries"). Built from
    classified sentences only (failure_reason and each try's error never quote the other side)."""
    count = intent.attempts
    plan = intent._state.fields_cache.get("plan")  # only when the caller loaded it: no query here
    paused = plan is not None and plan.plan_status == "PAUSED"
    if intent.status == IntentStatus.PENDING:
        made = f"; {count} {'try' if count == 1 else 'tries'} made so far" if count else ""
        return f"Approved and waiting to run (until {intent.expires_at:%Y-%m-%d %H:%M} UTC){made}."
    if intent.status == IntentStatus.EXECUTING:
        return f"Running now: the {ordinal(max(count, 1))} try."
    if intent.status == IntentStatus.SUCCEEDED:
        took = duration((intent.finished_at - intent.created_at).total_seconds()) if intent.finished_at else ""
        after = f", {took} after it was approved to run" if took else ""
        undone = f" It was undone on {intent.compensated_at:%Y-%m-%d %H:%M} UTC." if intent.compensated_at else ""
        return f"Succeeded on the {ordinal(max(count, 1))} try{after}.{undone}"
    then = "; the plan is PAUSED now" if paused else ""
    if intent.failure_class == FailureClass.WORKER_LOST:
        where = _CONNECTOR_NAMES.get(intent.connector, "the other side")
        return (f"Failed: the worker running it stopped before it finished (lost), after {count} "
                f"{'try' if count == 1 else 'tries'}; it was given up rather than started again. Whether {where} "
                f"received it is not known, but retrying the step is safe: the connector finds an effect it "
                f"already made by its key{then}.")
    if intent.failure_class == FailureClass.TRANSIENT:
        errors = [attempt.error for attempt in tries or [] if attempt.error]
        last = errors[-1] if errors else intent.failure_reason.rsplit("last error: ", 1)[-1]
        which = f"all {count} tries" if errors and len(set(errors)) == 1 and len(errors) == count else (
            f"the last of {count} tries")
        return f"Failed: {_sentence_of(last)} on {which}{then}."
    if intent.failure_class == FailureClass.PERMANENT:
        return f"Failed: {_sentence_of(intent.failure_reason)}; retrying cannot help{then}."
    if intent.status == IntentStatus.EXPIRED:
        return f"Not run: its approval expired at {intent.expires_at:%Y-%m-%d %H:%M} UTC before it could run."
    if intent.status == IntentStatus.CANCELLED:
        by = f" ({intent.failure_reason})" if intent.failure_reason else ""
        return f"Cancelled before it ran{by}."
    return f"Did not happen: {_sentence_of(intent.failure_reason or 'no reason was recorded')}{then}."
