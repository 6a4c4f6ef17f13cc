"""What every service checks first: who the actor is, their authority, the move, the version; and
the shapes a refusal takes."""
import logging
from dataclasses import dataclass
from uuid import UUID

from django.utils import timezone

from plans import ledger, policy, selectors
from plans.authority import Subject, Verb, denial
from plans.errors import Conflict, DomainError, NotAllowed, NotFound, PolicyRefused
from plans.lifecycle import INVALID_TRANSITION, MOVES, Move, can_move
from plans.models import Membership, PlanStatus, RevenuePlan, Role

logger = logging.getLogger(__name__)

VERSION_CONFLICT = "VERSION_CONFLICT"
POLICY_GATE_REFUSED = "POLICY_GATE_REFUSED"
OWNERSHIP_CHANGED = "OWNERSHIP_CHANGED"


@dataclass(frozen=True)
class SystemActor:
    """The system acting on its own behalf, e.g. SystemActor("proposal_generator")."""

    component: str


def actor_label(actor) -> str:
    return ledger.system_actor(actor.component) if isinstance(actor, SystemActor) else ledger.user_actor(actor)


def require_authority(verb: Verb, *, user, tenant_id: UUID, subject: Subject = Subject(),
                      what: str = "object") -> Membership:
    """Authority: a non-member sees a 404 (another tenant's object does not exist for them)."""
    membership = selectors.membership_for(user, tenant_id)
    if membership is None:
        raise NotFound("NOT_FOUND", f"The {what} does not exist.")
    reason = denial(verb, role=Role(membership.role), user_id=user.pk, subject=subject)
    if reason is not None:
        raise NotAllowed(reason.code, reason.detail, [reason])
    return membership


def require_admin(*, user, tenant_id: UUID) -> Membership:
    """TENANT_ADMIN of this tenant, or NotFound (not a member) / NotAllowed (another role)."""
    return require_authority(Verb.ADMINISTER, user=user, tenant_id=tenant_id, what="tenant")


def plan_subject(plan: RevenuePlan) -> Subject:
    return Subject(
        account_owner_id=plan.account.owner_id, plan_owner_id=plan.owner_id, plan_created_by=plan.created_by,
        plan_editors=frozenset(plan.edited_by_since_approval),
    )


def require_on_plan(verb: Verb, *, user, plan: RevenuePlan) -> Membership:
    return require_authority(verb, user=user, tenant_id=plan.tenant_id, subject=plan_subject(plan), what="plan")


def require_may_act_on_action(verb: Verb, *, user, tenant_id: UUID, plan: RevenuePlan | None = None,
                              account_owner_id: int | None = None) -> Membership:
    """Cancel or compensate an action intent: a plan step's under the plan's rules (its owner counts), a
    standalone one's with the account's owner in the plan owner's place. 404 for a non-member."""
    if plan is not None:
        return require_on_plan(verb, user=user, plan=plan)
    return require_authority(verb, user=user, tenant_id=tenant_id, what="action",
                             subject=Subject(account_owner_id=account_owner_id, plan_owner_id=account_owner_id))


def require_move(plan: RevenuePlan, move: Move) -> None:
    if not can_move(plan.plan_status, move):
        raise Conflict(
            INVALID_TRANSITION,
            f"A {plan.plan_status} plan cannot {move.value} (to {MOVES[move].target}).",
        )


def require_version(plan: RevenuePlan, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != plan.version:
        raise Conflict(
            VERSION_CONFLICT,
            f"The plan is at version {plan.version}, not {expected_version}; reload it and try again.",
        )


def gate_refusal(result: policy.PolicyResult, *, attempted: str) -> DomainError:
    reasons = list(result.reasons)
    if policy.CONFLICT_ACTIVE_PLAN_EXISTS in result.codes:
        conflict = next(reason for reason in reasons if reason.code == policy.CONFLICT_ACTIVE_PLAN_EXISTS)
        return Conflict(policy.CONFLICT_ACTIVE_PLAN_EXISTS, conflict.detail, reasons)
    return PolicyRefused(POLICY_GATE_REFUSED, f"The policy gate refused to {attempted} the plan.", reasons)


def raise_committed_refusal(error: DomainError):
    """Raised after the atomic block so the refusal's ledger entry commits; nothing else changed."""
    logger.info("plan write refused", extra={"code": error.code, "reasons": [r.code for r in error.reasons]})
    raise error


def touch(plan: RevenuePlan) -> None:
    """A change to a step is a change to the plan: bump its version, look at it again now."""
    plan.updated_at = timezone.now()
    plan.version += 1
    if plan.plan_status == PlanStatus.ACTIVE:
        plan.next_run_at = plan.updated_at
    plan.save(update_fields=["updated_at", "version", "next_run_at"])
