"""Who may do what (DESIGN §3.6): one rule per verb, pure over the caller's role and the plan."""
from dataclasses import dataclass
from enum import StrEnum

from plans.errors import Reason
from plans.models import Role

NOT_ALLOWED = "NOT_ALLOWED"
CREATOR_CANNOT_APPROVE = "CREATOR_CANNOT_APPROVE"
EDITED_SINCE_APPROVAL = "EDITED_SINCE_APPROVAL"


class Verb(StrEnum):
    READ = "read"
    PROPOSE = "propose"
    EDIT = "edit"
    APPROVE = "approve"
    REAPPROVE = "reapprove"
    APPROVE_STEP = "approve_step"
    PAUSE = "pause"
    RESUME = "resume"
    REVISE = "revise"
    SKIP_STEP = "skip_step"
    RETRY_STEP = "retry_step"
    ABORT = "abort"
    TRANSFER_ACCOUNT = "transfer_account"
    # Tell revplan what happened to an account (a renewal committed, a support risk): plans.signals.
    RECORD_SIGNAL = "record_signal"
    CANCEL_ACTION = "cancel"  # an action intent before it runs: "… may cancel it."
    COMPENSATE_ACTION = "compensate"
    ADMINISTER = "administer"
    # Create, rotate, revoke a tenant's integration tokens: a credential that writes into the tenant.
    MANAGE_INTEGRATION_TOKENS = "manage_integration_tokens"


APPROVERS = frozenset({Role.PLAN_APPROVER, Role.TENANT_ADMIN})

# Verbs the plan's owner may use whatever their role (a VIEWER never owns plans: see owner_roles).
# Cancelling a step's attempt before it runs holds the plan like a pause, so it is a pause's people.
OWNER_VERBS = frozenset({Verb.APPROVE_STEP, Verb.PAUSE, Verb.RESUME, Verb.REVISE, Verb.SKIP_STEP, Verb.RETRY_STEP,
                         Verb.ABORT, Verb.CANCEL_ACTION})
# Roles that may own accounts and plans.
OWNER_ROLES = frozenset({Role.SELLER, Role.PLAN_APPROVER, Role.TENANT_ADMIN})


@dataclass(frozen=True)
class Subject:
    """The facts about the object that the rules look at."""

    account_owner_id: int | None = None
    plan_owner_id: int | None = None
    plan_created_by: str | None = None
    # Users who edited the plan since its last approval (none of them may approve or reapprove it).
    plan_editors: frozenset[int] = frozenset()


def denial(verb: Verb, *, role: Role, user_id: int, subject: Subject = Subject()) -> Reason | None:
    """None when `role`/`user_id` may do `verb` on `subject`, else the reason why not."""
    if verb == Verb.READ:
        return None
    if verb in (Verb.PROPOSE, Verb.EDIT):
        if role in APPROVERS or (role == Role.SELLER and subject.account_owner_id == user_id):
            return None
        return Reason(NOT_ALLOWED, "Only the account's owner, a plan approver or a tenant admin may write plans.")
    if verb in (Verb.APPROVE, Verb.REAPPROVE):
        # The plan's risk (HIGH needs a tenant admin) is the policy gate's check_risk_authority.
        if role not in APPROVERS:
            return Reason(NOT_ALLOWED, f"Only a plan approver or a tenant admin may {verb.value} plans.")
        if subject.plan_created_by == f"user:{user_id}":
            return Reason(CREATOR_CANNOT_APPROVE, f"The person who created a plan may not {verb.value} it.")
        if user_id in subject.plan_editors:
            return Reason(EDITED_SINCE_APPROVAL, f"You edited this plan since its last approval, so you may not "
                                                 f"{verb.value} it; another approver must.")
        return None
    if verb in OWNER_VERBS:
        if role in APPROVERS or (role in OWNER_ROLES and subject.plan_owner_id == user_id):
            return None
        return Reason(NOT_ALLOWED, f"Only the plan's owner, a plan approver or a tenant admin may {verb.value} it.")
    if verb == Verb.TRANSFER_ACCOUNT:
        if role in APPROVERS:
            return None
        return Reason(NOT_ALLOWED, "Only a plan approver or a tenant admin may change an account's owner.")
    if verb == Verb.COMPENSATE_ACTION:
        # Undoing reaches into other systems (deletes a CRM task, a meeting): a tenant admin's call.
        if role == Role.TENANT_ADMIN:
            return None
        return Reason(NOT_ALLOWED, "Only a tenant admin may undo what an action did.")
    if verb == Verb.RECORD_SIGNAL:
        if role in OWNER_ROLES:
            return None
        return Reason(NOT_ALLOWED, "A viewer may not record signals; a seller, plan approver or tenant admin may.")
    if verb == Verb.ADMINISTER:
        if role == Role.TENANT_ADMIN:
            return None
        return Reason(NOT_ALLOWED, "Only a tenant admin may change tenant settings.")
    if verb == Verb.MANAGE_INTEGRATION_TOKENS:
        if role == Role.TENANT_ADMIN:
            return None
        return Reason(NOT_ALLOWED, "Only a tenant admin may create, rotate or revoke integration tokens.")
    raise ValueError(f"unknown verb {verb!r}")
