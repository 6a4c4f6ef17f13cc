"""Autonomy: the facts behind each step decision, budgets taken atomically, and the settings' writes.

Every settings write checks TENANT_ADMIN authority, changes the row and appends an AUTONOMY_CHANGED
entry to the tenant's ledger chain in one transaction; the next step decision sees it.
"""
from dataclasses import dataclass
from datetime import date
from uuid import UUID, uuid4

from django.contrib.postgres.aggregates import JSONBAgg
from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import JSONObject
from django.utils import timezone

from orchestrator.autonomy import budget
from orchestrator.autonomy.models import (
    DEFAULT_MODE,
    ActionTypeAutonomy,
    AutonomyMode,
    AutonomyUsage,
    GateDecision,
    ProposalDecision,
    TenantAutonomy,
)
from orchestrator.autonomy.policy import AutonomyDecision, Decision, StepFacts, decide, shadow_verdict
from plans import ledger
from plans.errors import ValidationFailed
from plans.models import PlanStep, RevenuePlan, Tenant
from plans.plan_types import ACTION_TYPES, get_action_type
from plans.selectors import engaged_kill_switches, killed_by
from plans.services import approvals, require_admin
from revplan.compiled import CompiledQuery

MAX_COUNT = 100_000  # any budget, limit or cooldown
DEFAULT_ACTION_TYPE_BUDGET = ActionTypeAutonomy._meta.get_field("max_per_day").default
DEFAULT_ACCOUNT_BUDGET = TenantAutonomy._meta.get_field("max_per_account_per_day").default
DEFAULT_PROPOSAL_BUDGET = TenantAutonomy._meta.get_field("max_proposals_per_day").default
DEFAULT_PROPOSAL_COOLDOWN = TenantAutonomy._meta.get_field("proposal_cooldown_days").default


@dataclass(frozen=True)
class StepDecision:
    decision: AutonomyDecision
    facts: StepFacts
    # In SHADOW mode: what the policy would have done on its own (policy.shadow_verdict); else None.
    shadow: AutonomyDecision | None = None

    def as_dict(self) -> dict:
        """What is stored on the step attempt and in the ledger: the decision and what it was based on
        (and in SHADOW mode, under "shadow", what the policy would have done on its own)."""
        stored = {**self.decision.as_dict(), "facts": self.facts.as_dict()}
        if self.shadow is not None:
            stored["shadow"] = self.shadow.as_dict()
        return stored


# --- the decision before a step attempt ---------------------------------------------------------


def decide_step(plan: RevenuePlan, step: PlanStep, *, budget_taken: bool = False,
                engaged_switches: frozenset[str] | None = None, today: date | None = None,
                tenant_settings: dict | None = None, units: budget.Units | None = None) -> StepDecision:
    """Gather the facts, ask AutoApprovalPolicyV1, and take a unit of both budgets when it allows autonomy.

    Call inside the transaction that starts the attempt: the budget units it takes are returned by
    that transaction's rollback, so a step that does not start does not use up the budget.
    `budget_taken`: a retry of an attempt that already took its unit. `engaged_switches`: the
    tenant's kill switches, when the caller has read them already. `tenant_settings`: the tenant's
    autonomy settings (tenant_settings_column), when the caller read them in this transaction.
    `units`: the unit is not taken here but added to `units`, which the caller takes just before it
    commits (budget.Units.take_or_raise: all, or BudgetShort and the caller decides again without).
    """
    settings = (_settings_for(plan.tenant_id, step.action_type) if tenant_settings is None
                else _settings_in(tenant_settings, step.action_type))
    if engaged_switches is None:
        engaged_switches = engaged_kill_switches(plan.tenant_id)
    facts = StepFacts(
        action_type=step.action_type,
        risk_level=step.risk_level,
        constraints=plan.constraints,
        mode=settings["mode"] or DEFAULT_MODE,
        opted_in=settings["opted_in_at"] is not None,
        killed_by=killed_by(engaged_switches, step.action_type),
        approved_by_id=approvals.step_approved_by(step),
        approval_voided=approvals.step_voided_because(step),
    )
    decision = decide(facts)
    if decision.decision == Decision.AUTO_EXECUTE and not budget_taken:
        unit = budget.Unit(
            tenant_id=plan.tenant_id,
            account_id=plan.account_id,
            action_type=step.action_type,
            day=today or timezone.now().date(),
            account_limit=_or_default(settings["max_per_account_per_day"], DEFAULT_ACCOUNT_BUDGET),
            action_type_limit=_or_default(settings["max_per_day"], DEFAULT_ACTION_TYPE_BUDGET),
        )
        if units is not None and min(unit.account_limit, unit.action_type_limit) >= 1:
            units.defer(unit)
        elif not budget.take([unit]):
            facts = StepFacts(**{**facts.as_dict(), "budget_left": False})
            decision = decide(facts)
    return StepDecision(decision, facts, shadow_verdict(facts) if facts.mode == AutonomyMode.SHADOW else None)


def _settings_query(tenant_id: UUID, action_type: str):
    action_type_setting = ActionTypeAutonomy.objects.filter(tenant_id=OuterRef("pk"), action_type=action_type)
    return Tenant.objects.filter(pk=tenant_id).annotate(
        mode=Subquery(action_type_setting.values("mode")[:1]),
        max_per_day=Subquery(action_type_setting.values("max_per_day")[:1]),
    ).values(
        "mode", "max_per_day", opted_in_at=F("autonomy__opted_in_at"),
        max_per_account_per_day=F("autonomy__max_per_account_per_day"),
    )[:1]


# Read before every step's decision: compiled once (revplan.compiled).
_SETTINGS = CompiledQuery(_settings_query, tenant_id=uuid4(), action_type="(an action type)")


def _settings_for(tenant_id: UUID, action_type: str) -> dict:
    """The tenant's opt-in and account budget and the action type's mode and budget, in one query (None: unset)."""
    settings = _SETTINGS.first(tenant_id=tenant_id, action_type=action_type)
    if settings is None:
        raise Tenant.DoesNotExist(f"Tenant {tenant_id} does not exist.")
    return settings


def tenant_settings_column(tenant_ref: OuterRef) -> JSONObject:
    """Every autonomy setting of the tenant `tenant_ref` names, as one JSON column of a caller's read (the
    engine's lock for a step's outcome reads it for the advance that follows): what _settings_for reads for
    one action type, for all of them."""
    per_action_type = (ActionTypeAutonomy.objects.filter(tenant_id=tenant_ref).order_by().values("tenant_id")
                       .annotate(rows=JSONBAgg(JSONObject(action_type="action_type", mode="mode",
                                                          max_per_day="max_per_day")))
                       .values("rows"))
    tenant = TenantAutonomy.objects.filter(tenant_id=tenant_ref).values(
        row=JSONObject(opted_in_at="opted_in_at", max_per_account_per_day="max_per_account_per_day"))[:1]
    return JSONObject(tenant=Subquery(tenant), action_types=Subquery(per_action_type))


def _settings_in(tenant_settings: dict, action_type: str) -> dict:
    """_settings_for's answer, from tenant_settings_column's value (None: unset)."""
    tenant = tenant_settings["tenant"] or {}
    row = next((row for row in tenant_settings["action_types"] or () if row["action_type"] == action_type), {})
    return {"mode": row.get("mode"), "max_per_day": row.get("max_per_day"), "opted_in_at": tenant.get("opted_in_at"),
            "max_per_account_per_day": tenant.get("max_per_account_per_day")}


def _or_default(value: int | None, default: int) -> int:
    return default if value is None else value


# --- reads for the control API --------------------------------------------------------------------


def autonomy_settings(tenant_id: UUID, *, day: date | None = None) -> dict:
    """The tenant's opt-in, every action type's mode and budget, and today's use of each budget."""
    day = day or timezone.now().date()
    tenant = TenantAutonomy.objects.filter(tenant_id=tenant_id).select_related("opted_in_by").first()
    rows = {row.action_type: row for row in ActionTypeAutonomy.objects.filter(tenant_id=tenant_id)}
    usage = AutonomyUsage.objects.filter(tenant_id=tenant_id, day=day)
    used_by_type = dict(usage.filter(account__isnull=True).values_list("action_type", "used"))
    used_by_account = {str(account_id): used for account_id, used in
                       usage.filter(account__isnull=False).values_list("account_id", "used")}
    return {
        "opted_in": bool(tenant and tenant.opted_in),
        "opted_in_at": tenant.opted_in_at if tenant else None,
        "opted_in_by": tenant.opted_in_by.get_username() if tenant and tenant.opted_in_by else None,
        "max_per_account_per_day": tenant.max_per_account_per_day if tenant else DEFAULT_ACCOUNT_BUDGET,
        "max_proposals_per_day": tenant.max_proposals_per_day if tenant else DEFAULT_PROPOSAL_BUDGET,
        "proposal_cooldown_days": tenant.proposal_cooldown_days if tenant else DEFAULT_PROPOSAL_COOLDOWN,
        "proposals_today": ProposalDecision.objects.filter(tenant_id=tenant_id, decision=GateDecision.ALLOW,
                                                           decided_at__date=day).count(),
        "day": day,
        "used_by_account": used_by_account,
        "action_types": [
            {
                "action_type": action_type,
                "mode": rows[action_type].mode if action_type in rows else DEFAULT_MODE,
                "max_per_day": rows[action_type].max_per_day if action_type in rows else DEFAULT_ACTION_TYPE_BUDGET,
                "used_today": used_by_type.get(action_type, 0),
                "updated_at": rows[action_type].updated_at if action_type in rows else None,
                "updated_by": rows[action_type].updated_by if action_type in rows else "",
            }
            for action_type in sorted(ACTION_TYPES)
        ],
    }


# --- writes (TENANT_ADMIN) -------------------------------------------------------------------------


def action_type_autonomy_set(*, tenant_id: UUID, user, action_type: str, mode: str | None = None,
                             max_per_day: int | None = None) -> ActionTypeAutonomy:
    """Change an action type's mode and/or daily budget for the tenant."""
    with transaction.atomic():
        require_admin(user=user, tenant_id=tenant_id)
        return action_type_autonomy_change(tenant_id=tenant_id, actor=ledger.user_actor(user), action_type=action_type,
                                           mode=mode, max_per_day=max_per_day)


def action_type_autonomy_change(*, tenant_id: UUID, actor: str, action_type: str, mode: str | None = None,
                                max_per_day: int | None = None, reason_code: str = "ACTION_TYPE_AUTONOMY_CHANGED",
                                why: str = "", evidence: dict | None = None) -> ActionTypeAutonomy:
    """The one write of an action type's setting and its AUTONOMY_CHANGED entry. The caller checked who may:
    a tenant admin (action_type_autonomy_set, a confirmed promotion) or the daily review's demotion.
    A plan's approval facts do not include modes: no approval goes stale by it."""
    if get_action_type(action_type) is None:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown action type {action_type!r}.")
    if mode is not None and mode not in AutonomyMode.values:
        raise ValidationFailed("VALIDATION_ERROR", f"Unknown mode {mode!r}; one of {', '.join(AutonomyMode.values)}.")
    if max_per_day is not None:
        _require_count("max_per_day", max_per_day)
    with transaction.atomic():
        row, _ = ActionTypeAutonomy.objects.select_for_update().get_or_create(tenant_id=tenant_id,
                                                                              action_type=action_type)
        before = {"mode": row.mode, "max_per_day": row.max_per_day}
        row.mode = mode if mode is not None else row.mode
        row.max_per_day = max_per_day if max_per_day is not None else row.max_per_day
        after = {"mode": row.mode, "max_per_day": row.max_per_day}
        if after == before:
            return row
        row.updated_by = actor
        row.save()
        data = {"action_type": action_type, "before": before, "after": after}
        ledger.autonomy_changed(
            tenant_id, actor=actor, reason_code=reason_code,
            explanation=f"{action_type}: mode {before['mode']} -> {row.mode}, "
                        f"{before['max_per_day']} -> {row.max_per_day} on their own per day.{' ' + why if why else ''}",
            data={**data, "evidence": evidence} if evidence is not None else data,
        )
    return row


TENANT_LIMITS = {
    "max_per_account_per_day": "Autonomous executions per account per day",
    "max_proposals_per_day": "Plans the proposal triggers may draft per day",
    "proposal_cooldown_days": "Days an account is left alone after a proposal",
}


def tenant_autonomy_set(*, tenant_id: UUID, user, opted_in: bool | None = None, **limits: int) -> TenantAutonomy:
    """Opt the tenant in to (or out of) autonomous execution, and/or change its limits (TENANT_LIMITS)."""
    if opted_in is not None and not isinstance(opted_in, bool):
        raise ValidationFailed("VALIDATION_ERROR", "opted_in is true or false.")
    for name, value in limits.items():
        if name not in TENANT_LIMITS:
            raise ValidationFailed("VALIDATION_ERROR", f"Unknown setting {name!r}.")
        _require_count(name, value)
    with transaction.atomic():
        require_admin(user=user, tenant_id=tenant_id)
        row, _ = TenantAutonomy.objects.select_for_update().get_or_create(tenant_id=tenant_id)
        actor = ledger.user_actor(user)
        if opted_in is not None and opted_in != row.opted_in:
            row.opted_in_at, row.opted_in_by = (timezone.now(), user) if opted_in else (None, None)
            row.save()
            ledger.autonomy_changed(
                tenant_id, actor=actor, reason_code="OPTED_IN" if opted_in else "OPTED_OUT",
                explanation=f"User {user.get_username()} opted the tenant {'in to' if opted_in else 'out of'} "
                            "autonomous execution.",
                data={"opted_in": opted_in},
            )
        for name, value in limits.items():
            before = getattr(row, name)
            if value == before:
                continue
            setattr(row, name, value)
            row.save()
            ledger.autonomy_changed(
                tenant_id, actor=actor, reason_code="LIMIT_CHANGED",
                explanation=f"{TENANT_LIMITS[name]}: {before} -> {value}.",
                data={"setting": name, "before": before, "after": value},
            )
    return row


def _require_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValidationFailed("VALIDATION_ERROR", f"{name} is a whole number from 0 to {MAX_COUNT}.")
