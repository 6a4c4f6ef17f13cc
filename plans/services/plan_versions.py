"""Moving in-flight plans to another version of their plan type's config (`manage.py migrate_plans`).

A plan runs on the version it was approved with (plans.plan_types); a deploy that adds a version leaves
the plans in flight on theirs. Moving them is explicit, plan by plan: each is checked against the new
version with the policy gate's structure checks (plans.policy.validate_structure: the type at that
version, its allowed action types and their order) and refused, with the reasons, where the new version
would make it invalid. A moved plan is a PLAN_TYPE_MIGRATED entry in its chain, and its approval — given
on the old version's rules — is stale: an APPROVAL_STALE layer holds an ACTIVE or PAUSED plan until a
reapproval (an APPROVED one is held by the step gate at its first step, which finds the approval's facts
drifted). A TENANT_ADMIN of the plan's tenant may keep the approvals instead (keep_approvals): the
approval's facts then name the new version, and the plan runs on without a new approval.
"""
import dataclasses
from dataclasses import dataclass
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from plans import ledger, policy, selectors
from plans.errors import DomainError, Reason, ValidationFailed
from plans.locking import lock_plan
from plans.models import PauseKind, PlanStatus, RevenuePlan
from plans.plan_types import PlanTypeConfig, get_plan_type_config, plan_type_versions
from plans.schemas import plan_to_schema
from plans.services.common import require_admin, touch
from plans.services.pauses import pause_layer_add_locked

# The plans a version change can still affect: approved and not finished. A DRAFT is approved on the
# latest version anyway.
IN_FLIGHT = (PlanStatus.APPROVED, PlanStatus.ACTIVE, PlanStatus.PAUSED)

MOVED, WOULD_MOVE, REFUSED = "MOVED", "WOULD_MOVE", "REFUSED"
UNKNOWN_PLAN_TYPE_VERSION = "UNKNOWN_PLAN_TYPE_VERSION"
PLAN_TYPE_MIGRATED = "PLAN_TYPE_MIGRATED"


@dataclass(frozen=True)
class PlanMigration:
    """One plan's result: MOVED, WOULD_MOVE (a dry run) or REFUSED with the reasons."""

    plan_id: UUID
    tenant_slug: str
    account_name: str
    plan_status: str
    from_version: int
    outcome: str
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class MigrationReport:
    plan_type: str
    to_version: int
    dry_run: bool
    keep_approvals: bool
    # What changes, per version the plans come from: {from_version: [{field, before, after}]}.
    changes: dict[int, list[dict]]
    plans: list[PlanMigration]

    def count(self, outcome: str) -> int:
        return sum(1 for plan in self.plans if plan.outcome == outcome)


def _shown(value):
    """A config value as the ledger and a report show it (tuples as lists, an SLA as its fields)."""
    if dataclasses.is_dataclass(value):
        return {key: _shown(item) for key, item in dataclasses.asdict(value).items()}
    if isinstance(value, tuple):
        return [_shown(item) for item in value]
    if hasattr(value, "total_seconds"):
        return f"{value.total_seconds() / 3600:g} h"
    return value


def config_changes(before: PlanTypeConfig | None, after: PlanTypeConfig) -> list[dict]:
    """The rules that differ between two versions of a plan type: [{field, before, after}], in field order."""
    changes = []
    for config_field in dataclasses.fields(after):
        if config_field.name in ("plan_type", "version"):
            continue
        old = _shown(getattr(before, config_field.name)) if before is not None else None
        new = _shown(getattr(after, config_field.name))
        if old != new:
            changes.append({"field": config_field.name, "before": old, "after": new})
    return changes


def _refusal_reasons(plan: RevenuePlan, steps, *, to_version: int, keep_approvals: bool, user) -> list[Reason]:
    """Why `plan` may not move to `to_version`: the gate's structure checks on the plan as it would be on the
    new version, and (keeping its approval) the caller's role in its tenant."""
    moved = plan_to_schema(plan, steps).model_copy(update={"plan_type_version": to_version})
    facts = selectors.gate_facts(plan, now=timezone.now())
    reasons = list(policy.validate_structure(moved, facts).reasons)
    if keep_approvals:
        try:
            require_admin(user=user, tenant_id=plan.tenant_id)
        except DomainError as refused:
            reasons.append(Reason(refused.code, "Keeping the approval takes a TENANT_ADMIN of the plan's tenant: "
                                                + refused.detail))
    return reasons


def plans_migrate_plan_type(*, plan_type: str, to_version: int, user=None, dry_run: bool = False,
                            keep_approvals: bool = False) -> MigrationReport:
    """Move every in-flight plan of `plan_type` not on `to_version` to it, one transaction per plan (a refusal
    or a failure leaves the others' moves standing). `user`: who does it (the ledger's actor; required to
    keep approvals, and then a TENANT_ADMIN of each plan's tenant). A dry run checks every plan and changes
    nothing."""
    target = get_plan_type_config(plan_type, to_version)
    if target is None:
        known = ", ".join(str(version) for version in plan_type_versions(plan_type)) or "none"
        raise ValidationFailed(UNKNOWN_PLAN_TYPE_VERSION, f"{plan_type} has no version {to_version} in the "
                                                          f"catalogue (versions: {known}).")
    if keep_approvals and user is None:
        raise ValidationFailed("VALIDATION_ERROR", "Keeping the approvals needs the tenant admin who keeps them.")
    actor = ledger.user_actor(user) if user is not None else ledger.system_actor("migrate_plans")
    plan_ids = list(RevenuePlan.objects.filter(plan_type=plan_type, plan_status__in=IN_FLIGHT)
                    .exclude(plan_type_version=to_version).order_by("created_at", "id").values_list("id", flat=True))
    results, changes = [], {}
    for plan_id in plan_ids:
        with transaction.atomic():
            result = _migrate_one(plan_id, target=target, user=user, actor=actor, dry_run=dry_run,
                                  keep_approvals=keep_approvals)
        if result is not None:
            results.append(result)
            changes.setdefault(result.from_version, config_changes(
                get_plan_type_config(plan_type, result.from_version), target))
    return MigrationReport(plan_type=plan_type, to_version=to_version, dry_run=dry_run,
                           keep_approvals=keep_approvals, changes=changes, plans=results)


def _migrate_one(plan_id: UUID, *, target: PlanTypeConfig, user, actor: str, dry_run: bool,
                 keep_approvals: bool) -> PlanMigration | None:
    plan = lock_plan(plan_id) if not dry_run else RevenuePlan.objects.filter(pk=plan_id).first()
    # Re-read under the lock: a plan that finished or moved meanwhile is not this run's business any more.
    if plan is None or plan.plan_status not in IN_FLIGHT or plan.plan_type_version == target.version:
        return None
    steps = list(plan.steps.all())
    from_version = plan.plan_type_version
    shown = dict(plan_id=plan.id, tenant_slug=plan.tenant.slug, account_name=plan.account.name,
                 plan_status=plan.plan_status, from_version=from_version)
    reasons = _refusal_reasons(plan, steps, to_version=target.version, keep_approvals=keep_approvals, user=user)
    if reasons:
        return PlanMigration(**shown, outcome=REFUSED, reasons=tuple(reasons))
    if dry_run:
        return PlanMigration(**shown, outcome=WOULD_MOVE)
    plan.plan_type_version = target.version
    record = plan.approval_record or {}
    if keep_approvals and "facts" in record:
        # The approval's facts name the version it holds for; a kept approval holds for the new one (else the
        # step gate would find them drifted and stale it after all).
        plan.approval_record = {**record, "facts": {**record["facts"], "plan_type_version": target.version}}
    plan.save(update_fields=["plan_type_version", "approval_record"])
    touch(plan)
    previous = get_plan_type_config(plan.plan_type, from_version)
    ledger.plan_type_migrated(plan, actor=actor, from_version=from_version, to_version=target.version,
                              changes=config_changes(previous, target), keep_approvals=keep_approvals)
    if not keep_approvals:
        pause_layer_add_locked(
            plan, kind=PauseKind.APPROVAL_STALE, actor=actor, reason_code=PLAN_TYPE_MIGRATED, steps=steps,
            explanation=f"The plan was moved to {plan.plan_type} version {target.version}; its approval was given "
                        f"on version {from_version}'s rules.",
            evidence={"changed": [{"field": "plan_type_version", "before": from_version, "after": target.version}]},
        )
    return PlanMigration(**shown, outcome=MOVED)
