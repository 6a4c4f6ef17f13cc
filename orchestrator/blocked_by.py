"""What keeps each plan from moving, for the API's plan payloads and the admin's plan list.

A read model above plans/: it joins the plans, their steps and pause layers (through plans.why, the
one source `why` answers from) with the execution spine's intents, which say since when an attempt
runs or when the failed one ended. A page of plans costs the same few queries whatever its size:
plans.why's (stops, waiting events, and open layers unless prefetched; not the creation entries, which
say why a plan exists, not what holds it) and one for the intents, none when the caller already holds them.
"""
from datetime import datetime
from uuid import UUID

from orchestrator.execution.explain import explain_intent
from orchestrator.execution.models import ActionIntent
from orchestrator.execution.selectors import latest_step_executions
from plans.models import RevenuePlan
from plans.why import PlanWhy, WhyAnswer, plans_why


def blocked_by_for(plans: list[RevenuePlan], *, now: datetime,
                   executions: dict[tuple[UUID, UUID], ActionIntent] | None = None) -> dict[UUID, list[dict]]:
    """plan_id -> what keeps it from moving now: [{code, detail, since, layer, step_id, waits_on,
    who_can_act, verb}], empty only when the plan can move or has finished.

    `plans` with their steps prefetched; `executions`: latest_step_executions(plans), if the caller
    has it already.
    """
    answers = plans_why(plans, now=now, exists=False)
    executions = latest_step_executions(plans) if executions is None else executions
    return {plan.id: blocked_by_of(answers[plan.id], executions) for plan in plans}


def blocked_by_of(why: PlanWhy, executions: dict[tuple[UUID, UUID], ActionIntent]) -> list[dict]:
    return [_item(why.plan, answer, executions) for answer in why.blocking]


def _item(plan: RevenuePlan, answer: WhyAnswer, executions: dict[tuple[UUID, UUID], ActionIntent]) -> dict:
    wait = answer.wait
    detail, since = answer.sentence, wait.since
    intent = executions.get((plan.id, answer.step_id)) if answer.step_id else None
    if intent is not None and wait.code == "STEP_RUNNING":
        # The step's current attempt: queued for a worker, or running since it was claimed.
        detail = f"{detail} {explain_intent(intent)}"
        since = intent.started_at or intent.created_at
    elif intent is not None and wait.code == "STEP_FAILED" and since is None:
        since = intent.finished_at
    return {
        "code": wait.code,
        "detail": detail,
        "since": since,
        "layer": wait.layer,
        "step_id": answer.step_id,
        "waits_on": wait.waits_on.value,
        "who_can_act": list(wait.who_can_act),
        "verb": wait.verb,
    }
