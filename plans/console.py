"""What a person looking at a plan may do to it now, and the open plans overview.

Pure reads shared by the approvers' admin console and the API; every write still goes through
plans.services, which checks the same rules again under the plan's lock.
"""
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from plans import policy, selectors
from plans.authority import Subject, Verb, denial
from plans.lifecycle import Move, StepMove, can_move, step_can_move
from plans.models import (
    FINISHED_STEP_STATUSES,
    PauseKind,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    Role,
)
from plans.schemas import plan_to_schema
from plans.why import PlanWhy, plans_why

# The plan-level buttons, in the order a person reads them; each is one service call.
PLAN_ACTIONS: dict[str, tuple[Verb, Move]] = {
    "approve": (Verb.APPROVE, Move.APPROVE),
    # Only for a PAUSED plan (the resume's source) held by a stale approval: see plan_actions_for.
    "reapprove": (Verb.REAPPROVE, Move.RESUME),
    "pause": (Verb.PAUSE, Move.PAUSE),
    "resume": (Verb.RESUME, Move.RESUME),
    "revise": (Verb.REVISE, Move.REVISE),
    "abort": (Verb.ABORT, Move.ABORT),
}

# The step buttons, likewise; plans.lifecycle.STEP_MOVES says when each is allowed.
STEP_ACTIONS: dict[str, tuple[Verb, StepMove]] = {
    "approve": (Verb.APPROVE_STEP, StepMove.APPROVE),
    "skip": (Verb.SKIP_STEP, StepMove.SKIP),
    "retry": (Verb.RETRY_STEP, StepMove.RETRY),
}


def _subject(plan: RevenuePlan) -> Subject:
    return Subject(account_owner_id=plan.account.owner_id, plan_owner_id=plan.owner_id,
                   plan_created_by=plan.created_by, plan_editors=frozenset(plan.edited_by_since_approval))


def role_of(user, plan: RevenuePlan) -> Role | None:
    membership = selectors.membership_for(user, plan.tenant_id)
    return Role(membership.role) if membership else None


def plan_actions_for(user, plan: RevenuePlan, *, role: Role | None = None) -> list[str]:
    """The plan actions `user` may take now: their role allows it and the plan's status does."""
    role = role or role_of(user, plan)
    if role is None:
        return []
    subject = _subject(plan)
    names = [
        name for name, (verb, move) in PLAN_ACTIONS.items()
        if can_move(plan.plan_status, move) and denial(verb, role=role, user_id=user.pk, subject=subject) is None
    ]
    if "reapprove" in names and not held_by_stale_approval(plan):
        names.remove("reapprove")
    return names


def held_by_stale_approval(plan: RevenuePlan) -> bool:
    """An open APPROVAL_STALE layer holds the plan: from its prefetched open layers (a list page, the
    inbox: no query per plan) or read."""
    prefetched = getattr(plan, selectors.OPEN_LAYERS, None)
    if prefetched is not None:
        return any(layer.kind == PauseKind.APPROVAL_STALE for layer in prefetched)
    return plan.pause_layers.filter(kind=PauseKind.APPROVAL_STALE, lifted_at__isnull=True).exists()


def step_actions_for(user, plan: RevenuePlan, step: PlanStep, *, role: Role | None = None) -> list[str]:
    role = role or role_of(user, plan)
    if role is None:
        return []
    subject = _subject(plan)
    return [
        name for name, (verb, move) in STEP_ACTIONS.items()
        if step_can_move(move, plan_status=plan.plan_status, step_status=step.status, required=step.required)
        and denial(verb, role=role, user_id=user.pk, subject=subject) is None
    ]


def gate_verdict(plan: RevenuePlan) -> policy.PolicyResult | None:
    """What the policy gate says about the plan's next move now (None for a plan with no next gate)."""
    facts = selectors.gate_facts(plan, now=timezone.now())
    if plan.plan_status == PlanStatus.DRAFT:
        return policy.validate_for_approval(plan_to_schema(plan), facts)
    if plan.plan_status in (PlanStatus.APPROVED, PlanStatus.PAUSED):
        return policy.evaluate_can_activate(plan_to_schema(plan), facts)
    return None


def current_step(steps: list[PlanStep]) -> PlanStep | None:
    """The first step, in plan order, that has not finished."""
    return next((step for step in sorted(steps, key=lambda s: s.sequence)
                 if step.status not in FINISHED_STEP_STATUSES), None)


def step_dependencies(steps: list[PlanStep]) -> dict:
    """step_id -> the steps it waits for, each as "2 (PREP_RENEWAL_BRIEF)" in plan order (the step table
    names them by number and action, not by id; an id the plan does not hold is shown as "unknown step")."""
    by_id = {str(step.step_id): step for step in steps}
    labels = {}
    for step in steps:
        needed = sorted((by_id[str(step_id)] for step_id in step.depends_on if str(step_id) in by_id),
                        key=lambda other: other.sequence)
        unknown = sum(1 for step_id in step.depends_on if str(step_id) not in by_id)
        labels[step.step_id] = [f"{other.sequence + 1} ({other.action_type})" for other in needed] + (
            ["unknown step"] * unknown)
    return labels


@dataclass(frozen=True)
class OpenPlanRow:
    plan: RevenuePlan
    step: PlanStep | None
    why: PlanWhy

    @property
    def waiting(self) -> str:
        """The stop reason of a PAUSED plan, else what its steps wait for."""
        answers = [self.why.stopped] if self.why.stopped else self.why.waiting
        return " ".join(answer.sentence for answer in answers)


def open_plans_of(plans: QuerySet) -> QuerySet:
    """The ACTIVE and PAUSED among `plans`, newest first: the plan_tenant_open_idx index reads only a page's rows,
    however many finished plans the tenant has."""
    return (plans.filter(plan_status__in=[PlanStatus.ACTIVE, PlanStatus.PAUSED])
            .select_related("account", "owner").prefetch_related("steps").order_by("-created_at", "-id"))


def open_plan_rows(plans) -> list[OpenPlanRow]:
    """A page of open_plans_of with each plan's current step and what it waits for, in constant queries."""
    plans = list(plans)
    answers = plans_why(plans, now=timezone.now())
    return [OpenPlanRow(plan, current_step(list(plan.steps.all())), answers[plan.id]) for plan in plans]
