"""Promotion and demotion by evidence: the daily review of each tenant's action types (DESIGN §5).

SHADOW -> AUTO_EXECUTE is proposed when a person agreed with the policy on at least
REVPLAN_PROMOTION_AGREEMENT of the last REVPLAN_PROMOTION_DECISIONS steps it would have run on its own
(within REVPLAN_SHADOW_WINDOW_DAYS), and applied only when a tenant admin confirms the proposal.
AUTO_EXECUTE -> SHADOW is applied by the review itself when the incidents over the action type's
autonomous runs in the last REVPLAN_DEMOTION_WINDOW_DAYS reach REVPLAN_DEMOTION_INCIDENTS: compensations
of autonomous intents, NEGATIVE_RESPONSE signals on an account after an autonomous step there, and trips
of the breaker of the connector that carries the action type. Every proposal, confirmation, dismissal
and demotion is an AUTONOMY_CHANGED entry in the tenant's chain with its evidence: counts, window,
thresholds.
"""
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from orchestrator.autonomy import shadow
from orchestrator.autonomy.models import ActionTypeAutonomy, AutonomyMode, AutonomyProposal, ProposalStatus
from orchestrator.autonomy.services import action_type_autonomy_change
from orchestrator.execution.connectors import connector_for
from orchestrator.execution.connectors.base import PermanentError
from orchestrator.execution.models import ActionIntent
from plans import ledger
from plans.errors import Conflict, NotFound
from plans.models import AccountSignal, EventType, PlanLedgerEntry
from plans.selectors import visible_to
from plans.services import require_admin

logger = logging.getLogger(__name__)

COMPONENT = "autonomy_review"
ACTOR = ledger.system_actor(COMPONENT)
NEGATIVE_RESPONSE = "NEGATIVE_RESPONSE"


@dataclass
class ReviewResult:
    resolved: int = 0
    proposed: list[str] = field(default_factory=list)
    demoted: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


def review_all_tenants(*, now: datetime | None = None) -> dict[str, ReviewResult]:
    now = now or timezone.now()
    tenant_ids = ActionTypeAutonomy.objects.filter(mode__in=[AutonomyMode.SHADOW, AutonomyMode.AUTO_EXECUTE]) \
        .values_list("tenant_id", flat=True).distinct()
    return {str(tenant_id): review_tenant(tenant_id, now=now) for tenant_id in tenant_ids}


def review_tenant(tenant_id: UUID, *, now: datetime | None = None) -> ReviewResult:
    now = now or timezone.now()
    result = ReviewResult(resolved=shadow.resolve(tenant_id, now=now))
    modes = dict(ActionTypeAutonomy.objects.filter(tenant_id=tenant_id).values_list("action_type", "mode"))
    for proposal in AutonomyProposal.objects.filter(tenant_id=tenant_id, status=ProposalStatus.PROPOSED):
        if modes.get(proposal.action_type) != proposal.from_mode:
            _supersede(proposal, now=now)
            result.superseded.append(proposal.action_type)
    for action_type, mode in sorted(modes.items()):
        if mode == AutonomyMode.SHADOW and _propose_if_earned(tenant_id, action_type, now=now):
            result.proposed.append(action_type)
        elif mode == AutonomyMode.AUTO_EXECUTE and _demote_if_incidents(tenant_id, action_type, now=now):
            result.demoted.append(action_type)
    if result.proposed or result.demoted:
        logger.info("autonomy review", extra={"tenant_id": str(tenant_id), "proposed": result.proposed,
                                              "demoted": result.demoted})
    return result


# --- promotion ---------------------------------------------------------------------------------------


def promotion_evidence(tenant_id: UUID, action_type: str, *, now: datetime) -> dict:
    """The last N decided steps the policy would have run, how many a person approved as is, the thresholds."""
    window_days = settings.REVPLAN_SHADOW_WINDOW_DAYS
    needed, threshold = settings.REVPLAN_PROMOTION_DECISIONS, settings.REVPLAN_PROMOTION_AGREEMENT
    decisions = shadow.last_decided_would_run(tenant_id, action_type, since=now - timedelta(days=window_days),
                                              limit=needed)
    agreed = sum(1 for decision in decisions if decision == "APPROVED")
    by_decision: dict[str, int] = {}
    for decision in decisions:
        by_decision[decision] = by_decision.get(decision, 0) + 1
    return {"action_type": action_type, "decisions": len(decisions), "agreed": agreed,
            "agreement": round(agreed / len(decisions), 4) if decisions else None,
            "by_person_decision": by_decision, "window_days": window_days,
            "min_decisions": needed, "min_agreement": threshold, "measured_at": now.isoformat()}


def _earned(evidence: dict) -> bool:
    return evidence["decisions"] >= evidence["min_decisions"] and evidence["agreement"] >= evidence["min_agreement"]


def _propose_if_earned(tenant_id: UUID, action_type: str, *, now: datetime) -> bool:
    evidence = promotion_evidence(tenant_id, action_type, now=now)
    if not _earned(evidence):
        return False
    with transaction.atomic():
        if AutonomyProposal.objects.filter(tenant_id=tenant_id, action_type=action_type,
                                           status=ProposalStatus.PROPOSED).exists():
            return False  # one open proposal at a time; the admin decides on it
        proposal = AutonomyProposal.objects.create(
            tenant_id=tenant_id, action_type=action_type, from_mode=AutonomyMode.SHADOW,
            to_mode=AutonomyMode.AUTO_EXECUTE, evidence=evidence, proposed_at=now)
        ledger.autonomy_changed(
            tenant_id, actor=ACTOR, reason_code="PROMOTION_PROPOSED",
            explanation=f"{action_type}: a person agreed with the policy on {evidence['agreed']} of the last "
                        f"{evidence['decisions']} steps it would have run on its own (at least "
                        f"{evidence['min_agreement']:.0%} of {evidence['min_decisions']} needed); proposed SHADOW "
                        "-> AUTO_EXECUTE, for a tenant admin to confirm.",
            data={"proposal_id": str(proposal.pk), "action_type": action_type, "from_mode": proposal.from_mode,
                  "to_mode": proposal.to_mode, "evidence": evidence},
        )
    return True


def _supersede(proposal: AutonomyProposal, *, now: datetime) -> None:
    with transaction.atomic():
        proposal.status, proposal.decided_by, proposal.decided_at = ProposalStatus.SUPERSEDED, ACTOR, now
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        ledger.autonomy_changed(
            proposal.tenant_id, actor=ACTOR, reason_code="PROMOTION_SUPERSEDED",
            explanation=f"{proposal.action_type}: the proposal to go {proposal.from_mode} -> {proposal.to_mode} no "
                        "longer applies (the mode was changed meanwhile).",
            data={"proposal_id": str(proposal.pk), "action_type": proposal.action_type})


def proposals_for_user(user, proposal_id=None):
    """The autonomy proposals of the caller's tenants (the one visibility rule), newest first."""
    proposals = visible_to(AutonomyProposal.objects.all(), user).order_by("-proposed_at", "-pk")
    return proposals if proposal_id is None else proposals.filter(pk=proposal_id)


def proposal_decide(*, proposal_id: int, user, confirm: bool) -> AutonomyProposal:
    """A tenant admin confirms a proposal (the mode changes, with the evidence in the entry) or dismisses it."""
    with transaction.atomic():
        proposal = proposals_for_user(user, proposal_id).select_for_update().first()
        if proposal is None:
            raise NotFound("NOT_FOUND", "The proposal does not exist.")
        require_admin(user=user, tenant_id=proposal.tenant_id)
        if proposal.status != ProposalStatus.PROPOSED:
            raise Conflict("PROPOSAL_NOT_OPEN", f"The proposal was {proposal.status.lower()} already.")
        actor, now = ledger.user_actor(user), timezone.now()
        mode = ActionTypeAutonomy.objects.filter(tenant_id=proposal.tenant_id, action_type=proposal.action_type) \
            .values_list("mode", flat=True).first()
        if confirm and mode != proposal.from_mode:
            raise Conflict("PROPOSAL_SUPERSEDED", f"{proposal.action_type} is in mode {mode} now, not "
                                                  f"{proposal.from_mode}: the evidence was about another mode.")
        proposal.status = ProposalStatus.CONFIRMED if confirm else ProposalStatus.DISMISSED
        proposal.decided_by, proposal.decided_at = actor, now
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        if confirm:
            action_type_autonomy_change(
                tenant_id=proposal.tenant_id, actor=actor, action_type=proposal.action_type, mode=proposal.to_mode,
                reason_code="PROMOTION_CONFIRMED", evidence={"proposal_id": str(proposal.pk), **proposal.evidence},
                why=f"Promoted on evidence: {proposal.evidence['agreed']} of {proposal.evidence['decisions']} agreed.")
        else:
            ledger.autonomy_changed(
                proposal.tenant_id, actor=actor, reason_code="PROMOTION_DISMISSED",
                explanation=f"{proposal.action_type}: the proposal to go {proposal.from_mode} -> {proposal.to_mode} "
                            "was dismissed; the mode stays.",
                data={"proposal_id": str(proposal.pk), "action_type": proposal.action_type,
                      "evidence": proposal.evidence})
    return proposal


# --- demotion ----------------------------------------------------------------------------------------


def _connector_of(tenant_id: UUID, action_type: str) -> str:
    try:
        return connector_for(tenant_id, action_type)[0]
    except PermanentError:
        return ""


def incident_evidence(tenant_id: UUID, action_type: str, *, now: datetime) -> dict:
    """Incidents over the action type's autonomous runs in the window, by kind, and the threshold."""
    window_days = settings.REVPLAN_DEMOTION_WINDOW_DAYS
    since = now - timedelta(days=window_days)
    autonomous = ActionIntent.objects.filter(tenant_id=tenant_id, action_type=action_type, plan__isnull=False,
                                             approved_by__isnull=True)
    compensations = autonomous.filter(compensated_at__gte=since).count()
    after_autonomous_step = autonomous.filter(account_id=OuterRef("account_id"), finished_at__gte=since,
                                              finished_at__lte=OuterRef("observed_at"))
    negative_responses = AccountSignal.objects.filter(
        tenant_id=tenant_id, signal_type=NEGATIVE_RESPONSE, observed_at__gte=since,
    ).filter(Exists(after_autonomous_step)).count()
    connector = _connector_of(tenant_id, action_type)
    breaker_trips = PlanLedgerEntry.objects.filter(
        tenant_id=tenant_id, plan_id__isnull=True, event_type=EventType.BREAKER_OPENED, occurred_at__gte=since,
        data__connector=connector,
    ).count() if connector else 0
    incidents = compensations + negative_responses + breaker_trips
    return {"action_type": action_type, "incidents": incidents, "compensations": compensations,
            "negative_responses": negative_responses, "breaker_trips": breaker_trips, "connector": connector,
            "window_days": window_days, "max_incidents": settings.REVPLAN_DEMOTION_INCIDENTS,
            "measured_at": now.isoformat()}


def _demote_if_incidents(tenant_id: UUID, action_type: str, *, now: datetime) -> bool:
    evidence = incident_evidence(tenant_id, action_type, now=now)
    if evidence["incidents"] < evidence["max_incidents"]:
        return False
    with transaction.atomic():
        current = ActionTypeAutonomy.objects.select_for_update().filter(
            tenant_id=tenant_id, action_type=action_type).values_list("mode", flat=True).first()
        if current != AutonomyMode.AUTO_EXECUTE:  # an admin changed it since the review read it
            return False
        action_type_autonomy_change(
            tenant_id=tenant_id, actor=ACTOR, action_type=action_type, mode=AutonomyMode.SHADOW,
            reason_code="AUTONOMY_DEMOTED", evidence=evidence,
            why=f"Demoted on evidence: {evidence['incidents']} incidents in {evidence['window_days']} days "
                f"({evidence['compensations']} compensations, {evidence['negative_responses']} negative responses, "
                f"{evidence['breaker_trips']} breaker trips; {evidence['max_incidents']} demote).")
    return True
