"""What an approval covers (DESIGN §3.3): a plan's and a step's content, its digest, the facts it was
given on, and what changed since. Pure: no database, no clock; the services record, the engine compares.

For the data migration (helper A, plans/migrations), which inlines these and must hash exactly this:

  digest(content) = sha256(json.dumps(content, sort_keys=True, separators=(",", ":"))).hexdigest()
                    (json.dumps' defaults otherwise: ensure_ascii=True)

  plan content = {"plan_type": plan.plan_type, "objective": plan.objective, "constraints": plan.constraints,
                  "steps": [{"step_id": str(step.step_id), "action_type": step.action_type,
                             "parameters": step.parameters, "depends_on": sorted(str(d) for d in step.depends_on)}
                            for step in the plan's steps sorted by sequence]}
  step content = {"action_type": step.action_type, "parameters": step.parameters,
                  "depends_on": sorted(str(d) for d in step.depends_on), "risk_level": step.risk_level}
  facts        = {"owner_id": plan.owner_id, "renewal_date": plan.account.renewal_date.isoformat() or None,
                  "risk_level": plan.risk_level,
                  "plan_type_version": plan.plan_type_version (None for an unknown type or version)}

  plan.approval_record = {"digest": digest(plan content), "content": plan content, "facts": facts,
                          "approved_by": plan.approved_by_id, "approved_at": plan.approved_at.isoformat()}
  step.approval_record = {"digest": digest(step content), "content": step content,
                          "approved_by": step.approved_by_id, "approved_at": step.approved_at.isoformat()}
  ("approved_by"/"approved_at" are optional: the payload falls back to the row's columns.)
A record without "digest" is no approval: the autonomy policy treats such a step as not approved by a
person, and the engine compares no facts for such a plan (only the live checks run).
"""
import hashlib
import json
from datetime import datetime

from plans.models import PlanStatus, PlanStep, RevenuePlan, RiskLevel
from plans.plan_types import get_plan_type_config, plan_type_config_for

CURRENT = "CURRENT"
VOID = "VOID"
STALE = "STALE"

_RISK_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2}


def digest(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def step_content(step: PlanStep) -> dict:
    return {
        "action_type": step.action_type,
        "parameters": step.parameters,
        "depends_on": sorted(str(dependency) for dependency in step.depends_on),
        "risk_level": step.risk_level,
    }


def plan_content(plan: RevenuePlan, steps: list[PlanStep]) -> dict:
    return {
        "plan_type": plan.plan_type,
        "objective": plan.objective,
        "constraints": plan.constraints,
        "steps": [
            {"step_id": str(step.step_id), "action_type": step.action_type, "parameters": step.parameters,
             "depends_on": sorted(str(dependency) for dependency in step.depends_on)}
            for step in sorted(steps, key=lambda s: s.sequence)
        ],
    }


def approval_facts(plan: RevenuePlan) -> dict:
    """The facts an approval is given on. Not the autonomy policy's version: that is decided afresh at
    every attempt. `plan.account` is read (the engine's and the API's plans carry it already). The version is
    the one the plan runs on (plans.plan_types.plan_type_config_for): a deploy that adds a version changes no
    approved plan's facts; only migrate_plans moves a plan to another version."""
    config = plan_type_config_for(plan)
    renewal_date = plan.account.renewal_date
    return {
        "owner_id": plan.owner_id,
        "renewal_date": renewal_date.isoformat() if renewal_date else None,
        "risk_level": plan.risk_level,
        "plan_type_version": config.version if config else None,
    }


def _stamp(user_id: int | None, at: datetime | None) -> dict:
    return {"approved_by": user_id, "approved_at": at.isoformat() if at else None}


def plan_record(plan: RevenuePlan, steps: list[PlanStep], *, approved_by_id: int, approved_at: datetime) -> dict:
    content = plan_content(plan, steps)
    return {"digest": digest(content), "content": content, "facts": approval_facts(plan),
            **_stamp(approved_by_id, approved_at)}


def record_plan_approval(plan: RevenuePlan, steps: list[PlanStep], *, user, approved_at: datetime) -> dict:
    """What an approval and a reapproval both write on the plan (set on it, unsaved; returned as {column:
    value} for the caller's save): who approved, under which config version, the record of its content and
    facts; the editors since the last approval are forgotten. A DRAFT's approval stamps the plan type's latest
    version, which the plan then runs on; a reapproval keeps the version the plan runs on (moving it is
    migrate_plans' explicit, checked job)."""
    changes = {"approved_by": user, "approved_at": approved_at, "edited_by_since_approval": []}
    if plan.plan_status == PlanStatus.DRAFT:
        changes["plan_type_version"] = get_plan_type_config(plan.plan_type).version
    for name, value in changes.items():
        setattr(plan, name, value)
    changes["approval_record"] = plan.approval_record = plan_record(plan, steps, approved_by_id=user.pk,
                                                                    approved_at=approved_at)
    return changes


def step_record(step: PlanStep, *, approved_by_id: int, approved_at: datetime) -> dict:
    content = step_content(step)
    return {"digest": digest(content), "content": content, **_stamp(approved_by_id, approved_at)}


def voided_record(step: PlanStep, changes: list[dict]) -> dict:
    """What a step keeps of an approval its content change voided: what changed, and whose it was."""
    record = step.approval_record or {}
    return {"voided": changes, "approved_by": record.get("approved_by", step.approved_by_id),
            "approved_at": record.get("approved_at")}


# --- what changed ---------------------------------------------------------------------------------


def _change(field: str, before, after) -> dict:
    return {"field": field, "before": before, "after": after}


def content_changes(before: dict, after: dict) -> list[dict]:
    """Field-level diff of two contents (plan or step): [{field, before, after}], in a stable order.

    A plan's steps are compared by step_id: `steps.<id>.parameters`, a step added or removed as
    `steps.<id>` (before or after null), and a new order of the same steps as `step_order`."""
    changes = []
    for field in sorted(set(before) | set(after)):
        if field == "steps":
            changes.extend(_step_list_changes(before.get("steps", []), after.get("steps", [])))
        elif before.get(field) != after.get(field):
            changes.append(_change(field, before.get(field), after.get(field)))
    return changes


def _step_list_changes(before: list[dict], after: list[dict]) -> list[dict]:
    old = {step["step_id"]: step for step in before}
    new = {step["step_id"]: step for step in after}
    changes = []
    for step_id in [*old, *(step_id for step_id in new if step_id not in old)]:
        if step_id not in new:
            changes.append(_change(f"steps.{step_id}", old[step_id], None))
        elif step_id not in old:
            changes.append(_change(f"steps.{step_id}", None, new[step_id]))
        else:
            changes.extend(
                _change(f"steps.{step_id}.{field}", old[step_id].get(field), new[step_id].get(field))
                for field in sorted((set(old[step_id]) | set(new[step_id])) - {"step_id"})
                if old[step_id].get(field) != new[step_id].get(field)
            )
    kept_old = [step_id for step_id in old if step_id in new]
    kept_new = [step_id for step_id in new if step_id in old]
    if kept_old != kept_new:
        changes.append(_change("step_order", kept_old, kept_new))
    return changes


def fact_changes(recorded: dict, current: dict) -> list[dict]:
    """Facts that drifted since the approval. A risk that fell is no drift (the approval covered more)."""
    changes = []
    for field in sorted(set(recorded) | set(current)):
        before, after = recorded.get(field), current.get(field)
        if before == after:
            continue
        if field == "risk_level" and before in _RISK_RANK and after in _RISK_RANK \
                and _RISK_RANK[after] < _RISK_RANK[before]:
            continue
        changes.append(_change(field, before, after))
    return changes


def _field_word(field: str) -> str:
    """`steps.<id>.parameters` -> `parameters`; `steps.<id>` (a step added or removed) -> `steps`."""
    parts = field.split(".")
    if parts[0] != "steps":
        return field
    return parts[2] if len(parts) > 2 else "steps"


def described(changes: list[dict]) -> str:
    """`parameters changed`, `action_type and parameters changed`: the fields, for a sentence."""
    fields = list(dict.fromkeys(_field_word(change["field"]) for change in changes))
    if not fields:
        return "its content changed"
    return (", ".join(fields[:-1]) + " and " + fields[-1] if len(fields) > 1 else fields[0]) + " changed"


# --- step approvals -----------------------------------------------------------------------------------


def step_changes(step: PlanStep) -> list[dict] | None:
    """How the step differs from what its approval covered: None when it has no approval to compare
    (never approved, or voided), [] when the approval holds."""
    record = step.approval_record or {}
    if "digest" not in record:
        return None
    content = step_content(step)
    if digest(content) == record["digest"]:
        return []
    return content_changes(record.get("content", {}), content)


def step_approved_by(step: PlanStep) -> int | None:
    """The person whose approval of exactly this content holds, else None (the autonomy policy's fact)."""
    if step.approved_at is None or step.approved_by_id is None:
        return None
    return step.approved_by_id if step_changes(step) == [] else None


def step_voided_because(step: PlanStep) -> str:
    """'' unless a person's approval of the step was voided by a change: then what changed, as words."""
    record = step.approval_record or {}
    if "voided" in record:
        return described(record["voided"])
    changes = step_changes(step)
    return described(changes) if changes else ""


def step_approval(step: PlanStep) -> dict | None:
    """The step's `approval` payload: {state, approved_by, approved_at, changed_since}; None if never approved."""
    record = step.approval_record or {}
    if "voided" in record:
        return {"state": VOID, "approved_by": record.get("approved_by"), "approved_at": record.get("approved_at"),
                "changed_since": record["voided"]}
    changes = step_changes(step)
    if changes is None:
        return None
    return {"state": VOID if changes else CURRENT,
            "approved_by": step.approved_by_id or record.get("approved_by"),
            "approved_at": step.approved_at.isoformat() if step.approved_at else record.get("approved_at"),
            "changed_since": changes}


# --- plan approvals -----------------------------------------------------------------------------------


def plan_changes(plan: RevenuePlan, steps: list[PlanStep]) -> tuple[list[dict], list[dict]] | None:
    """(content changes, fact drift) since the plan's last approval; None when it has none on record."""
    record = plan.approval_record or {}
    if "digest" not in record:
        return None
    content = plan_content(plan, steps)
    content_diff = [] if digest(content) == record["digest"] else content_changes(record.get("content", {}),
                                                                                  content)
    return content_diff, fact_changes(record.get("facts", {}), approval_facts(plan))


def plan_approval(plan: RevenuePlan, steps: list[PlanStep]) -> dict | None:
    """The plan's `approval` payload. VOID: revised back to DRAFT or its content changed; STALE: the facts
    it was given on drifted; CURRENT otherwise. None when it was never approved."""
    changes = plan_changes(plan, steps)
    if changes is None:
        return None
    content_diff, fact_diff = changes
    record = plan.approval_record
    if content_diff or plan.plan_status == PlanStatus.DRAFT:
        state = VOID
    elif fact_diff:
        state = STALE
    else:
        state = CURRENT
    return {"state": state,
            "approved_by": plan.approved_by_id or record.get("approved_by"),
            "approved_at": plan.approved_at.isoformat() if plan.approved_at else record.get("approved_at"),
            "changed_since": content_diff + fact_diff}
