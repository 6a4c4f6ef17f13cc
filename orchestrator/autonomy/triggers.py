"""Proposal triggers: accounts entering their renewal window get a DRAFT, behind the DecisionCostGate.

Each account's verdict is taken and recorded under the tenant's row lock, so two runs at once (two
beats, a retried task) cannot both spend the last unit of budget or both propose for one account.
An ALLOW is recorded before the proposer runs: a proposer that fails (an LLM outage) still used
the budget and starts the cooldown, so a broken proposer is not called again on every run.
"""
import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from orchestrator.autonomy import cost_gate
from orchestrator.autonomy.models import GateDecision, ProposalDecision, TenantAutonomy
from plans import proposals, selectors
from plans.errors import DomainError
from plans.models import Tenant
from plans.services import SystemActor

logger = logging.getLogger(__name__)

TRIGGER = "renewal_window"
ACTOR = SystemActor("proposal_trigger")


@dataclass(frozen=True)
class RunResult:
    allowed: int = 0
    deferred: int = 0
    skipped: int = 0
    proposed: int = 0
    failed: int = 0


def run_all_tenants(*, plan_type: str = "RENEWAL_DEFENSE") -> dict[str, RunResult]:
    return {slug: run_for_tenant(tenant_id, plan_type=plan_type)
            for tenant_id, slug in Tenant.objects.order_by("slug").values_list("id", "slug")}


def run_for_tenant(tenant_id: UUID, *, plan_type: str = "RENEWAL_DEFENSE", now: datetime | None = None) -> RunResult:
    """One pass over the tenant's accounts in their renewal window: gate each, propose for the ALLOWed."""
    now = now or timezone.now()
    account_ids = list(
        selectors.accounts_in_renewal_window(tenant_id, plan_type=plan_type, today=now.date())
        .order_by("renewal_date", "id").values_list("id", flat=True)
    )
    counts = {"allowed": 0, "deferred": 0, "skipped": 0, "proposed": 0, "failed": 0}
    for account_id in account_ids:
        decision = _gate(tenant_id, account_id, plan_type=plan_type, now=now)
        counts[{"ALLOW": "allowed", "DEFER": "deferred", "SKIP": "skipped"}[decision.decision]] += 1
        if decision.decision == GateDecision.ALLOW:
            counts["proposed" if _propose(decision) else "failed"] += 1
    return RunResult(**counts)


def _gate(tenant_id: UUID, account_id: UUID, *, plan_type: str, now: datetime) -> ProposalDecision:
    with transaction.atomic():
        TenantAutonomy.objects.get_or_create(tenant_id=tenant_id)
        settings = TenantAutonomy.objects.select_for_update().get(tenant_id=tenant_id)
        allowed = ProposalDecision.objects.filter(decision=GateDecision.ALLOW, plan_type=plan_type)
        account = (
            selectors.accounts_in_renewal_window(tenant_id, plan_type=plan_type, today=now.date())
            .filter(pk=account_id)
            .annotate(has_open_plan=Exists(selectors.open_plans_of_type(plan_type).filter(account_id=OuterRef("pk"))))
            .values("has_open_plan")
            .first()
        )
        facts = cost_gate.GateFacts(
            now=now,
            has_open_plan=bool(account and account["has_open_plan"]),
            last_allowed_at=allowed.filter(account_id=account_id).aggregate(last=Max("decided_at"))["last"],
            cooldown_days=settings.proposal_cooldown_days,
            proposals_today=allowed.filter(tenant_id=tenant_id, decided_at__gte=_day_start(now)).count(),
            daily_budget=settings.max_proposals_per_day,
        )
        verdict = cost_gate.decide(facts)
        decision = ProposalDecision.objects.create(
            tenant_id=tenant_id, account_id=account_id, plan_type=plan_type, trigger=TRIGGER,
            decision=verdict.decision, reason=verdict.reason, explanation=verdict.explanation,
            facts=facts.as_dict(), decided_at=now,
        )
    logger.info("proposal cost gate", extra={"tenant_id": str(tenant_id), "account_id": str(account_id),
                                             "decision": verdict.decision, "reason": verdict.reason})
    return decision


def _propose(decision: ProposalDecision) -> bool:
    try:
        plan = proposals.propose_for_account(account_id=decision.account_id, actor=ACTOR,
                                             plan_type=decision.plan_type, trigger=TRIGGER)
    except DomainError as error:
        decision.error = f"{error.code}: {error.detail}"[:2000]
        decision.save(update_fields=["error"])
        logger.warning("proposal failed after the gate allowed it",
                       extra={"account_id": str(decision.account_id), "code": error.code, "detail": error.detail})
        return False
    decision.plan = plan
    decision.save(update_fields=["plan"])
    return True


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)
