"""The plan proposal generator (DESIGN §3.8): it only ever drafts.

The default proposer is rule-based and deterministic; REVPLAN_PROPOSER=llm asks the LLM proposer
(plans.llm_proposer) instead. Either way the draft goes through services.plan_propose, which
checks it like any other and writes PLAN_CREATED with the facts the proposer saw.
"""
import uuid
from datetime import date
from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field

from plans import llm_proposer, services
from plans.models import Account, AccountSignal, RevenuePlan
from plans.plan_types import RENEWAL_DEFENSE
from plans.schemas import PlanDraftInput, StepInput

SUPPORT_RISK_SIGNAL_TYPES = frozenset({"SUPPORT_RISK", "SUPPORT_ESCALATION"})


def renewal_defense_draft(*, signal_types: set[str]) -> PlanDraftInput:
    """Meeting, then brief, each waiting for the one before; a support escalation only on support risk."""
    wanted = {"REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF"}
    if signal_types & SUPPORT_RISK_SIGNAL_TYPES:
        wanted.add("ESCALATE_SUPPORT_RISK")
    return _chained([action_type for action_type in RENEWAL_DEFENSE.default_sequence if action_type in wanted])


def _chained(action_types: list[str], objective: str | None = None) -> PlanDraftInput:
    """Steps in the given order, each depending on the one before."""
    steps, previous = [], None
    for action_type in action_types:
        step = StepInput(step_id=uuid.uuid4(), action_type=action_type, depends_on=[previous] if previous else [])
        steps.append(step)
        previous = step.step_id
    return PlanDraftInput(objective=objective, steps=steps)


# --- proposing for an account -------------------------------------------------------------------


class ProposalInput(BaseModel):
    """What a proposer sees about an account; also the PLAN_CREATED entry's inputs summary."""

    model_config = ConfigDict(frozen=True)

    plan_type: str
    account_id: UUID
    account_name: str
    renewal_date: date | None
    days_to_renewal: int | None
    posture: dict[str, Any]
    signal_types: list[str]
    recent_signals: list[dict[str, str]]
    previous_plans: list[dict[str, str]]


class Proposal(BaseModel):
    proposer: str
    draft: PlanDraftInput
    dropped_action_types: list[str] = Field(default_factory=list)


RECENT_SIGNALS = 20
PREVIOUS_PLANS = 10


def proposal_input(account: Account, *, plan_type: str, today: date | None = None) -> ProposalInput:
    today = today or timezone.localdate()
    signals = list(AccountSignal.objects.filter(account=account).order_by("-observed_at")
                   .values_list("signal_type", "observed_at")[:RECENT_SIGNALS])
    previous = RevenuePlan.objects.filter(account=account, plan_type=plan_type).order_by("-created_at")
    return ProposalInput(
        plan_type=plan_type,
        account_id=account.id,
        account_name=account.name,
        renewal_date=account.renewal_date,
        days_to_renewal=(account.renewal_date - today).days if account.renewal_date else None,
        posture=account.posture or {},
        signal_types=sorted({signal_type for signal_type, _ in signals}),
        recent_signals=[{"signal_type": t, "observed_at": at.isoformat()} for t, at in signals],
        previous_plans=[{"plan_status": status, "completion_reason": reason or ""} for status, reason in
                        previous.values_list("plan_status", "completion_reason")[:PREVIOUS_PLANS]],
    )


def rule_based(proposal: ProposalInput) -> Proposal:
    return Proposal(proposer="rules", draft=renewal_defense_draft(signal_types=set(proposal.signal_types)))


def llm_based(proposal: ProposalInput) -> Proposal:
    objective, action_types, dropped = llm_proposer.suggest(proposal.model_dump(mode="json"),
                                                            plan_type=proposal.plan_type)
    return Proposal(proposer=f"llm:{settings.REVPLAN_LLM['model']}", draft=_chained(action_types, objective),
                    dropped_action_types=dropped)


def propose_for_account(*, account_id: UUID, actor, plan_type: str = "RENEWAL_DEFENSE",
                        trigger: str = "manual") -> RevenuePlan:
    """Draft a plan for an account with the configured proposer and persist it (never approves)."""
    account = services.require_may_propose(account_id=account_id, actor=actor)
    facts = proposal_input(account, plan_type=plan_type)
    proposal = llm_based(facts) if settings.REVPLAN_PROPOSER == "llm" else rule_based(facts)
    return services.plan_propose(
        account_id=account.id, plan_type=plan_type, draft=proposal.draft, actor=actor, trigger=trigger,
        inputs_summary={"proposer": proposal.proposer, "dropped_action_types": proposal.dropped_action_types,
                        **facts.model_dump(mode="json")},
    )
