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
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from orchestrator.autonomy import shadow
from orchestrator.autonomy.models import (
    ActionTypeAutonomy,
    AutonomyMode,
    AutonomyProposal,
    ProposalStatus,
    ShadowDecision,
)
from orchestrator.autonomy.services import action_type_autonomy_change
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
REVIEW_LOCK = 18_001  # pg advisory lock class of the autonomy review (with the tenant's hash)


@dataclass
class ReviewResult:
    resolved: int = 0
    proposed: list[str] = field(default_factory=list)
    demoted: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


def review_all_tenants(*, now: datetime | None = None) -> dict[str, ReviewResult]:
    """Every tenant with something to review: an action type in SHADOW or AUTO_EXECUTE, an open proposal or
    shadow decision (a mode set back to APPROVAL_REQUIRED still closes its proposal). One tenant's failure is
    logged and the others are still reviewed."""
    now = now or timezone.now()
    tenant_ids = set(ActionTypeAutonomy.objects.filter(mode__in=[AutonomyMode.SHADOW, AutonomyMode.AUTO_EXECUTE])
                     .values_list("tenant_id", flat=True))
    tenant_ids |= set(AutonomyProposal.objects.filter(status=ProposalStatus.PROPOSED).values_list("tenant_id",
                                                                                                flat=True))
    tenant_ids |= set(ShadowDecision.objects.filter(person_decision="").values_list("tenant_id", flat=True)
                      .distinct())
    results = {}
    for tenant_id in sorted(tenant_ids):
        try:
            results[str(tenant_id)] = review_tenant(tenant_id, now=now)
        except Exception:
            logger.exception("autonomy review failed for a tenant; the others go on", extra={
                "tenant_id": str(tenant_id)})
    return results


def review_tenant(tenant_id: UUID, *, now: datetime | None = None) -> ReviewResult:
    """One tenant's review under the tenant's review lock (a PostgreSQL session lock): a second review of the
    same tenant at the same time (a redelivered task, a second beat) finds it taken and reviews nothing. Each
    change commits on its own, its rows locked before its ledger entry, as a person's changes lock them."""
    now = now or timezone.now()
    with _review_lock(tenant_id) as acquired:
        if not acquired:
            logger.info("autonomy review already running for the tenant", extra={"tenant_id": str(tenant_id)})
            return ReviewResult()
        result = ReviewResult(resolved=shadow.resolve(tenant_id))
        modes = dict(ActionTypeAutonomy.objects.filter(tenant_id=tenant_id).values_list("action_type", "mode"))
        for proposal in AutonomyProposal.objects.filter(tenant_id=tenant_id, status=ProposalStatus.PROPOSED):
            why = _no_longer_applies(proposal, modes.get(proposal.action_type), now=now)
            if why is not None:
                _supersede(proposal, why=why, now=now)
                result.superseded.append(proposal.action_type)
        for action_type, mode in sorted(modes.items()):
            if mode == AutonomyMode.SHADOW and _propose_if_earned(tenant_id, action_type, now=now):
                result.proposed.append(action_type)
            elif mode == AutonomyMode.AUTO_EXECUTE and _demote_if_incidents(tenant_id, action_type, now=now):
                result.demoted.append(action_type)
    if result.proposed or result.demoted or result.superseded:
        logger.info("autonomy review", extra={"tenant_id": str(tenant_id), "proposed": result.proposed,
                                              "demoted": result.demoted, "superseded": result.superseded})
    return result


@contextmanager
def _review_lock(tenant_id: UUID):
    key = [REVIEW_LOCK, str(tenant_id)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", key)
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)


def _entered_mode_at(tenant_id: UUID, action_type: str, mode: str) -> datetime | None:
    """When the action type last went into `mode` (its AUTONOMY_CHANGED entry), if the ledger says."""
    return PlanLedgerEntry.objects.filter(
        tenant_id=tenant_id, plan_id__isnull=True, event_type=EventType.AUTONOMY_CHANGED,
        data__action_type=action_type, data__after__mode=mode,
    ).exclude(data__before__mode=mode).aggregate(last=Max("occurred_at"))["last"]


# --- promotion ---------------------------------------------------------------------------------------


def promotion_evidence(tenant_id: UUID, action_type: str, *, now: datetime) -> dict:
    """The last N decided steps the policy would have run, how many a person approved as is, the thresholds.
    After a dismissal, or a return to SHADOW, only the decisions made since count."""
    window_days = settings.REVPLAN_SHADOW_WINDOW_DAYS
    needed, threshold = settings.REVPLAN_PROMOTION_DECISIONS, settings.REVPLAN_PROMOTION_AGREEMENT
    dismissed_at = AutonomyProposal.objects.filter(
        tenant_id=tenant_id, action_type=action_type, status=ProposalStatus.DISMISSED,
    ).aggregate(last=Max("decided_at"))["last"]
    # Evidence from before a dismissal was weighed and refused; from before a demotion (back into SHADOW), it
    # led to a promotion that incidents ended: neither counts again.
    since = max(moment for moment in (now - timedelta(days=window_days), dismissed_at,
                                      _entered_mode_at(tenant_id, action_type, AutonomyMode.SHADOW)) if moment)
    decisions = shadow.last_decided_would_run(tenant_id, action_type, since=since, limit=needed)
    agreed = sum(1 for decision in decisions if decision == "APPROVED")
    by_decision: dict[str, int] = {}
    for decision in decisions:
        by_decision[decision] = by_decision.get(decision, 0) + 1
    return {"action_type": action_type, "decisions": len(decisions), "agreed": agreed,
            "agreement": round(agreed / len(decisions), 4) if decisions else None,
            "by_person_decision": by_decision, "window_days": window_days, "since": since.isoformat(),
            "min_decisions": needed, "min_agreement": threshold, "measured_at": now.isoformat()}


def _earned(evidence: dict) -> bool:
    return (evidence["agreement"] is not None and evidence["decisions"] >= evidence["min_decisions"]
            and evidence["agreement"] >= evidence["min_agreement"])


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


def _no_longer_applies(proposal: AutonomyProposal, mode: str | None, *, now: datetime) -> dict | None:
    """Why an open proposal no longer applies (its evidence in the ledger entry), or None while it does."""
    if mode != proposal.from_mode:
        return {"reason": "MODE_CHANGED", "mode_now": mode or "APPROVAL_REQUIRED"}
    evidence = promotion_evidence(proposal.tenant_id, proposal.action_type, now=now)
    return None if _earned(evidence) else {"reason": "EVIDENCE_CHANGED", "evidence_now": evidence}


def _supersede(proposal: AutonomyProposal, *, why: dict, now: datetime) -> None:
    with transaction.atomic():
        locked = AutonomyProposal.objects.select_for_update().filter(pk=proposal.pk,
                                                                     status=ProposalStatus.PROPOSED).first()
        if locked is None:
            return  # decided meanwhile
        locked.status, locked.decided_by, locked.decided_at = ProposalStatus.SUPERSEDED, ACTOR, now
        locked.save(update_fields=["status", "decided_by", "decided_at"])
        changed = ("the mode was changed meanwhile" if why["reason"] == "MODE_CHANGED"
                   else "the evidence no longer passes the thresholds")
        ledger.autonomy_changed(
            locked.tenant_id, actor=ACTOR, reason_code="PROMOTION_SUPERSEDED",
            explanation=f"{locked.action_type}: the proposal to go {locked.from_mode} -> {locked.to_mode} no longer "
                        f"applies ({changed}).",
            data={"proposal_id": str(locked.pk), "action_type": locked.action_type, "evidence": why})


def proposals_for_user(user, proposal_id=None):
    """The autonomy proposals of the caller's tenants (the one visibility rule), newest first."""
    proposals = visible_to(AutonomyProposal.objects.all(), user).order_by("-proposed_at", "-pk")
    return proposals if proposal_id is None else proposals.filter(pk=proposal_id)


def proposal_decide(*, proposal_id: UUID, user, confirm: bool) -> AutonomyProposal:
    """A tenant admin confirms a proposal (the mode changes, with the evidence in the entry) or dismisses it."""
    with transaction.atomic():
        proposal = proposals_for_user(user, proposal_id).select_for_update().first()
        if proposal is None:
            raise NotFound("NOT_FOUND", "The proposal does not exist.")
        require_admin(user=user, tenant_id=proposal.tenant_id)
        if proposal.status != ProposalStatus.PROPOSED:
            raise Conflict("PROPOSAL_NOT_OPEN", f"The proposal was {proposal.status.lower()} already.")
        actor, now = ledger.user_actor(user), timezone.now()
        mode = ActionTypeAutonomy.objects.select_for_update().filter(
            tenant_id=proposal.tenant_id, action_type=proposal.action_type).values_list("mode", flat=True).first()
        if confirm:
            shadow.resolve(proposal.tenant_id)  # what people decided since the review counts too
        if confirm and mode != proposal.from_mode:
            raise Conflict("PROPOSAL_SUPERSEDED", f"{proposal.action_type} is in mode {mode} now, not "
                                                  f"{proposal.from_mode}: the evidence was about another mode.")
        evidence = promotion_evidence(proposal.tenant_id, proposal.action_type, now=now) if confirm else None
        if confirm and not _earned(evidence):
            raise Conflict("PROPOSAL_NO_LONGER_EARNED", (
                f"{proposal.action_type}: a person agreed on {evidence['agreed']} of the last {evidence['decisions']} "
                f"steps the policy would have run now (needs {evidence['min_agreement']:.0%} of "
                f"{evidence['min_decisions']}); the proposal stands on older evidence."))
        proposal.status = ProposalStatus.CONFIRMED if confirm else ProposalStatus.DISMISSED
        proposal.decided_by, proposal.decided_at = actor, now
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        if confirm:
            action_type_autonomy_change(
                tenant_id=proposal.tenant_id, actor=actor, action_type=proposal.action_type, mode=proposal.to_mode,
                reason_code="PROMOTION_CONFIRMED", evidence={"proposal_id": str(proposal.pk), **evidence},
                why=f"Promoted on evidence: {evidence['agreed']} of {evidence['decisions']} agreed.")
        else:
            ledger.autonomy_changed(
                proposal.tenant_id, actor=actor, reason_code="PROMOTION_DISMISSED",
                explanation=f"{proposal.action_type}: the proposal to go {proposal.from_mode} -> {proposal.to_mode} "
                            "was dismissed; the mode stays.",
                data={"proposal_id": str(proposal.pk), "action_type": proposal.action_type,
                      "evidence": proposal.evidence})
    return proposal


# --- demotion ----------------------------------------------------------------------------------------


def incident_evidence(tenant_id: UUID, action_type: str, *, now: datetime) -> dict:
    """Incidents over the action type's autonomous runs since the later of the window's start and its last
    promotion (incidents before it were already weighed), by kind, and the threshold. A breaker counts once an
    outage (CLOSED -> OPEN; a failed probe re-opening it is the same outage), for the connectors its autonomous
    runs used."""
    window_days = settings.REVPLAN_DEMOTION_WINDOW_DAYS
    promoted_at = _entered_mode_at(tenant_id, action_type, AutonomyMode.AUTO_EXECUTE)
    since = max(moment for moment in (now - timedelta(days=window_days), promoted_at) if moment)
    autonomous = ActionIntent.objects.filter(tenant_id=tenant_id, action_type=action_type, plan__isnull=False,
                                             approved_by__isnull=True)
    compensations = autonomous.filter(compensated_at__gte=since).count()
    after_autonomous_step = autonomous.filter(account_id=OuterRef("account_id"), finished_at__gte=since,
                                              finished_at__lte=OuterRef("observed_at"))
    negative_responses = AccountSignal.objects.filter(
        tenant_id=tenant_id, signal_type=NEGATIVE_RESPONSE, observed_at__gte=since,
    ).filter(Exists(after_autonomous_step)).count()
    connectors = sorted(set(autonomous.filter(started_at__gte=since).exclude(connector="")
                            .values_list("connector", flat=True).distinct()))
    breaker_trips = PlanLedgerEntry.objects.filter(
        tenant_id=tenant_id, plan_id__isnull=True, event_type=EventType.BREAKER_OPENED, occurred_at__gte=since,
        data__connector__in=connectors, data__from_state="CLOSED",
    ).count() if connectors else 0
    incidents = compensations + negative_responses + breaker_trips
    return {"action_type": action_type, "incidents": incidents, "compensations": compensations,
            "negative_responses": negative_responses, "breaker_trips": breaker_trips, "connectors": connectors,
            "since": since.isoformat(), "window_days": window_days,
            "max_incidents": settings.REVPLAN_DEMOTION_INCIDENTS, "measured_at": now.isoformat()}


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
