"""Existing rows under the new rules (issue 14, DESIGN §3.2–3.3), forward only.

1. Every PAUSED plan gets one open pause layer from its stop reason, so whatever lifts that cause
   lifts it (a plan paused before the layers would otherwise be held by nothing the new rules name):
     PAUSED_BY_USER        → PERSON
     KILL_SWITCH           → GLOBAL_KILL_SWITCH when the stop names REVPLAN_EXECUTION_DISABLED (the
                             tick lifts it once the setting is off); else KILL_SWITCH scoped to the
                             action type the stop names ('' for the tenant's switch) while that switch
                             is still engaged (its release lifts it); a switch released already →
                             POLICY (a person's resume, as before: a release is no flip twice)
     RETRY_LIMIT_EXCEEDED  → RETRY_LIMIT scoped to the FAILED step (the lowest sequence if several);
                             with no FAILED step left (skipped since) → POLICY
     OWNERSHIP_CHANGED     → APPROVAL_STALE (lifted by reapprove)
     anything else         → POLICY (an autonomy refusal; a person's resume, the step decided again)
   set_by "system:migration", evidence {"migrated_from": <stop code>}.
2. Every approval on record gets the digest of its plan's or step's current content and the facts it
   stands on now, so it stays valid: the rules of plans.services.approvals, frozen here (a migration
   must not import app code that later changes; this copy hashes exactly what that module documents).

No ledger entries: the hash chains are appended by the app (plans.ledger, inside its own transactions,
one chain link per entry), and a migration writing links would have to re-implement that chain. The
layers carry their origin instead (set_by, evidence.migrated_from), and the plan's PLAN_PAUSED entry
already says why it stopped. No plan moves: a PAUSED plan stays PAUSED until its layer is lifted.
"""
import hashlib
import json
import re

from django.db import migrations
from django.db.models import Max
from django.utils import timezone

ACTOR = "system:migration"
_ACTION_SWITCH = re.compile(r"kill switch for ([A-Z0-9_]+)")


def _digest(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _depends_on(step) -> list[str]:
    return sorted(str(dependency) for dependency in step.depends_on)


def _step_content(step) -> dict:
    return {"action_type": step.action_type, "parameters": step.parameters, "depends_on": _depends_on(step),
            "risk_level": step.risk_level}


def _plan_content(plan, steps) -> dict:
    return {
        "plan_type": plan.plan_type, "objective": plan.objective, "constraints": plan.constraints,
        "steps": [{"step_id": str(step.step_id), "action_type": step.action_type, "parameters": step.parameters,
                   "depends_on": _depends_on(step)} for step in sorted(steps, key=lambda s: s.sequence)],
    }


def _facts(plan) -> dict:
    renewal_date = plan.account.renewal_date
    return {"owner_id": plan.owner_id, "renewal_date": renewal_date.isoformat() if renewal_date else None,
            "risk_level": plan.risk_level,
            # the version the plan was approved under, which the app stamps on approval (today the config's)
            "plan_type_version": plan.plan_type_version}


def _stamp(user_id, at) -> dict:
    return {"approved_by": user_id, "approved_at": at.isoformat() if at else None}


def _layer_for(plan, steps, engaged_switches) -> tuple[str, str, str]:
    """(kind, scope, explanation) of the one layer a PAUSED plan gets from its stop reason."""
    code, detail = plan.stop_reason_code, plan.stop_reason_detail or ""
    said = detail or f"Paused with {code or 'no recorded reason'}."
    if code == "PAUSED_BY_USER":
        return "PERSON", "", said
    if code == "KILL_SWITCH":
        if "REVPLAN_EXECUTION_DISABLED" in detail:
            return "GLOBAL_KILL_SWITCH", "", said
        named = _ACTION_SWITCH.search(detail)
        scope = named.group(1) if named else ""
        if (plan.tenant_id, scope) in engaged_switches:
            return "KILL_SWITCH", scope, said
        return "POLICY", "", f"{said.rstrip('.')}. That kill switch is released since; resume the plan."
    if code == "RETRY_LIMIT_EXCEEDED":
        failed = sorted((step for step in steps if step.status == "FAILED"), key=lambda step: step.sequence)
        if failed:
            return "RETRY_LIMIT", str(failed[0].step_id), said
        return "POLICY", "", f"{said.rstrip('.')}. The failed step is no longer FAILED; resume the plan."
    if code == "OWNERSHIP_CHANGED":
        return "APPROVAL_STALE", "", said
    return "POLICY", "", said


def forward(apps, schema_editor):
    RevenuePlan = apps.get_model("plans", "RevenuePlan")
    PlanStep = apps.get_model("plans", "PlanStep")
    PauseLayer = apps.get_model("plans", "PauseLayer")
    KillSwitch = apps.get_model("plans", "KillSwitch")
    PlanLedgerEntry = apps.get_model("plans", "PlanLedgerEntry")
    now = timezone.now()

    # 1. layers for PAUSED plans (none for a plan some layer already holds: the migration may run twice)
    engaged_switches = set(KillSwitch.objects.filter(engaged=True).values_list("tenant_id", "action_type"))
    already_held = set(PauseLayer.objects.filter(lifted_at__isnull=True).values_list("plan_id", flat=True))
    layers = []
    for plan in RevenuePlan.objects.filter(plan_status="PAUSED").prefetch_related("steps").iterator(chunk_size=500):
        if plan.id in already_held:
            continue
        kind, scope, explanation = _layer_for(plan, list(plan.steps.all()), engaged_switches)
        layers.append(PauseLayer(
            plan_id=plan.id, kind=kind, scope=scope, reason_code=plan.stop_reason_code or "PAUSED",
            explanation=explanation, evidence={"migrated_from": plan.stop_reason_code},
            set_by=ACTOR, set_at=plan.paused_at or plan.updated_at or now,
        ))
    PauseLayer.objects.bulk_create(layers, batch_size=500)

    # 2. a digest for every approval on record (approved_at set, no record yet)
    plans = []
    for plan in (RevenuePlan.objects.filter(approved_at__isnull=False, approval_record={})
                 .select_related("account").prefetch_related("steps").iterator(chunk_size=500)):
        content = _plan_content(plan, list(plan.steps.all()))
        plan.approval_record = {"digest": _digest(content), "content": content, "facts": _facts(plan),
                                **_stamp(plan.approved_by_id, plan.approved_at)}
        plans.append(plan)
    RevenuePlan.objects.bulk_update(plans, ["approval_record"], batch_size=500)
    # A step approval from before this release could outlive an edit of its plan (the hole the bound
    # approvals close): one given before the plan's last edit is not blessed with the content the
    # edit left, it is voided, so the step waits for a person again. The ledger says when plans were
    # edited (read only).
    last_edit = dict(PlanLedgerEntry.objects.filter(event_type="PLAN_EDITED").values("plan_id")
                     .annotate(last=Max("occurred_at")).values_list("plan_id", "last"))
    steps = []
    for step in PlanStep.objects.filter(approved_at__isnull=False, approval_record={}).iterator(chunk_size=500):
        edited_at = last_edit.get(step.plan_id)
        if edited_at is not None and edited_at > step.approved_at:
            step.approval_record = {"voided": [{"field": "content", "before": "approved",
                                                "after": "edited after the approval"}]}
            step.approved_at = step.approved_by_id = None
        else:
            content = _step_content(step)
            step.approval_record = {"digest": _digest(content), "content": content,
                                    **_stamp(step.approved_by_id, step.approved_at)}
        steps.append(step)
    PlanStep.objects.bulk_update(steps, ["approval_record", "approved_at", "approved_by_id"], batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ("plans", "0007_pause_layers_and_bound_approvals"),
    ]

    operations = [
        # Forward only: going back to 0007 keeps the rows (0007's own reverse drops them with the table).
        migrations.RunPython(forward, migrations.RunPython.noop),
    ]
