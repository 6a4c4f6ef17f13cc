"""Test arrangements for a step that failed at its retry limit, made the way the orchestrator makes them."""
from plans import services
from plans.models import PauseKind, PlanStep, RevenuePlan, StepStatus

RETRY_LIMIT_EXCEEDED = "RETRY_LIMIT_EXCEEDED"


def fail_at_the_limit(plan: RevenuePlan, step: PlanStep, *, attempts: int = 3,
                      last_error: str = "TRANSIENT: CRM answered 503") -> PlanStep:
    """The step FAILED after `attempts` attempts, and the plan (ACTIVE or PAUSED) held by its RETRY_LIMIT
    layer, through the service the engine calls."""
    PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.FAILED, attempts=attempts, last_error=last_error,
                                               next_attempt_at=None)
    services.plan_pause_by_policy(
        plan_id=plan.id, component="orchestrator", kind=PauseKind.RETRY_LIMIT, scope=str(step.step_id),
        reason_code=RETRY_LIMIT_EXCEEDED,
        explanation=f"{step.action_type} failed {attempts} times in a row (the limit is 3): {last_error}.",
        facts={"step_id": str(step.step_id), "attempts": attempts, "last_error": last_error},
    )
    step.refresh_from_db()
    plan.refresh_from_db()
    return step
