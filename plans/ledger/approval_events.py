"""Writers for a plan's chain about its approvals: one voided by a change of content, a fresh approval of
stale facts, and a FAILED step reset because its content changed (DESIGN §3.3)."""
from plans.ledger.chain import append, snapshot
from plans.models import EventType, PlanLedgerEntry, RevenuePlan


def approval_voided(plan: RevenuePlan, *, actor: str, changes: list[dict], described: str,
                    step=None) -> PlanLedgerEntry:
    """`step`: the step whose approval the edit voided; None for the plan's own approval."""
    whose = f"{step.action_type} step's" if step is not None else "plan's"
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id if step is not None else None,
        event_type=EventType.APPROVAL_VOIDED,
        actor=actor,
        reason_code="CONTENT_CHANGED",
        explanation=f"The {whose} approval was voided: {described}.",
        data={"changes": changes, "approval": "step" if step is not None else "plan"},
    )


def plan_reapproved(plan: RevenuePlan, *, actor: str, role: str, facts_before: dict, facts_after: dict,
                    changes: list[dict]) -> PlanLedgerEntry:
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PLAN_REAPPROVED,
        actor=actor,
        reason_code="REAPPROVED",
        explanation=f"Reapproved ({role}) on the current facts: "
        + ("; ".join(f"{c['field']} {c['before']} -> {c['after']}" for c in changes) or "nothing drifted") + ".",
        data={"facts_before": facts_before, "facts_after": facts_after, "changes": changes,
              "digest": plan.approval_record.get("digest"), "plan": snapshot(plan)},
    )


def step_reset(plan: RevenuePlan, *, step, actor: str, changes: list[dict], described: str) -> PlanLedgerEntry:
    """A FAILED step the revision changed: a new series of attempts once the plan runs again."""
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        step_id=step.step_id,
        event_type=EventType.STEP_RETRIED,
        actor=actor,
        reason_code="CONTENT_CHANGED",
        explanation=f"{step.action_type} failed, and the revision changed it ({described}): it runs again as a "
        f"new series of attempts (attempts so far: {step.attempts_before_series}).",
        data={"changes": changes, "attempts_before_series": step.attempts_before_series},
    )
