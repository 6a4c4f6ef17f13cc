"""Reads that are more than one ORM call: memberships, the facts the gate and evaluator need."""
from datetime import datetime

from django.conf import settings
from django.db.models import Q

from plans.evaluator import SignalFact
from plans.models import AccountSignal, KillSwitch, Membership, PlanStatus, RevenuePlan, Role
from plans.plan_types import get_plan_type_config
from plans.policy import GateFacts


def membership_for(user, tenant_id) -> Membership | None:
    if user is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, tenant_id=tenant_id, is_active=True).first()


def execution_killed_by(tenant_id, action_type: str = "") -> str:
    """'' when execution may run, else which switch stops it."""
    if settings.REVPLAN_EXECUTION_DISABLED:
        return "global kill switch REVPLAN_EXECUTION_DISABLED"
    scopes = Q(action_type="") | Q(action_type=action_type) if action_type else Q(action_type="")
    switch = KillSwitch.objects.filter(scopes, tenant_id=tenant_id, engaged=True).order_by("action_type").first()
    if switch is None:
        return ""
    return f"kill switch for {switch.action_type}" if switch.action_type else "tenant kill switch"


def gate_facts(plan: RevenuePlan, *, now: datetime, approver_role: Role | None = None) -> GateFacts:
    owner_active = (
        plan.owner_id is not None
        and Membership.objects.filter(user_id=plan.owner_id, tenant_id=plan.tenant_id, is_active=True)
        .exclude(role=Role.VIEWER)
        .exists()
    )
    conflicting_plan_id = (
        RevenuePlan.objects.filter(account_id=plan.account_id, plan_type=plan.plan_type, plan_status=PlanStatus.ACTIVE)
        .exclude(pk=plan.pk)
        .values_list("id", flat=True)
        .first()
    )
    return GateFacts(
        now=now,
        approver_role=approver_role,
        execution_killed_by=execution_killed_by(plan.tenant_id),
        owner_is_active_member=owner_active,
        conflicting_plan_id=conflicting_plan_id,
    )


def objective_signals(plan: RevenuePlan) -> list[SignalFact]:
    config = get_plan_type_config(plan.plan_type)
    if config is None:
        return []
    rows = AccountSignal.objects.filter(
        account_id=plan.account_id, signal_type__in=config.objective_signal_types
    ).values_list("signal_type", "observed_at")
    return [SignalFact(signal_type, observed_at) for signal_type, observed_at in rows]
