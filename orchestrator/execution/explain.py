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
