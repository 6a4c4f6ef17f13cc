"""The daily digest: what autopilot did for a tenant on one UTC day, what waits for people, what was
blocked and why, what the proposal triggers decided, which switches are on, and the evidence for
autonomy: agreement in shadow mode, the promotions waiting for an admin's confirmation, the day's
promotions and demotions. Stored once per
(tenant, day), served by the API and e-mailed to the tenant's admins (seed doc 002: a hard requirement
before anything runs on its own).
"""
import logging
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrator.autonomy import shadow
from orchestrator.autonomy.models import (
    ActionTypeAutonomy,
    AutonomyDigest,
    AutonomyMode,
    AutonomyProposal,
    ProposalDecision,
    ProposalStatus,
    TenantAutonomy,
)
from orchestrator.deadlines.items import waiting_items
from orchestrator.execution.models import ActionIntent
from plans.inbox import InboxKind
from plans.models import (
    AccountSignal,
    EventType,
    KillSwitch,
    Membership,
    PlanLedgerEntry,
    Role,
    Tenant,
)

logger = logging.getLogger(__name__)

BLOCKING_REASONS = ("KILL_SWITCH", "MODE_DISABLED", "MODE_PROPOSE_ONLY", "UNKNOWN_ACTION_TYPE")
LISTED = 50  # items listed per section; the counts cover everything


def digest_all_tenants(*, day: date | None = None) -> int:
    """Every tenant's digest for `day` (default: yesterday); returns how many tenants got theirs."""
    day = day or (timezone.now() - timedelta(days=1)).date()
    done = 0
    for tenant_id in Tenant.objects.values_list("id", flat=True):
        try:
            digest_for_tenant(tenant_id, day=day)
            done += 1
        except Exception:
            # One tenant's failure (a mail server down) must not cost the others their digest; the next
            # run mails a stored digest that was not mailed yet.
            logger.exception("autonomy digest failed", extra={"tenant_id": str(tenant_id), "day": str(day)})
    return done


def digest_for_tenant(tenant_id: UUID, *, day: date) -> AutonomyDigest:
    """The tenant's digest for `day`: built once, mailed to its admins until that has worked once."""
    digest = AutonomyDigest.objects.filter(tenant_id=tenant_id, day=day).first()
    if digest is None:
        summary = build_summary(tenant_id, day=day)
        try:
            with transaction.atomic():
                digest = AutonomyDigest.objects.create(tenant_id=tenant_id, day=day, summary=summary,
                                                       text=render_text(summary))
        except IntegrityError:  # another run made it meanwhile
            digest = AutonomyDigest.objects.get(tenant_id=tenant_id, day=day)
    return digest if digest.emailed_to else _mail(digest)


def _mail(digest: AutonomyDigest) -> AutonomyDigest:
    with transaction.atomic():
        # Locked, so two runs at once do not both send it.
        digest = AutonomyDigest.objects.select_for_update().get(pk=digest.pk)
        if digest.emailed_to:
            return digest
        recipients = sorted(Membership.objects.filter(tenant_id=digest.tenant_id, role=Role.TENANT_ADMIN,
                                                      is_active=True)
                            .exclude(user__email="").values_list("user__email", flat=True))
        if not recipients:
            return digest
        send_mail(subject=f"revplan autopilot digest for {digest.day:%Y-%m-%d}", message=digest.text,
                  from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=recipients)
        digest.emailed_to = recipients
        digest.save(update_fields=["emailed_to"])
    logger.info("autonomy digest mailed", extra={"tenant_id": str(digest.tenant_id), "day": str(digest.day),
                                                 "recipients": len(recipients)})
    return digest


def build_summary(tenant_id: UUID, *, day: date) -> dict:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    end = start + timedelta(days=1)
    autonomous = (ActionIntent.objects.filter(tenant_id=tenant_id, plan__isnull=False, approved_by__isnull=True,
                                              created_at__gte=start, created_at__lt=end)
                  .select_related("account").order_by("created_at"))
    # Everything that waits for a person at the day's end, soonest due first: overdue items lead (the
    # deadline job's own due times, renewal cut-off included).
    waiting_now = waiting_items(now=end, tenant_id=tenant_id, due_soon_only=False)
    overdue = [item for item in waiting_now if item.overdue(end)]
    waiting_steps = [item for item in waiting_now if item.kind == InboxKind.STEP_APPROVAL]
    blocked = (PlanLedgerEntry.objects.filter(tenant_id=tenant_id, occurred_at__gte=start, occurred_at__lt=end)
               .filter(event_type__in=[EventType.PLAN_PAUSED, EventType.ACTION_BLOCKED],
                       reason_code__in=[*BLOCKING_REASONS, "RETRY_LIMIT_EXCEEDED"])
               .order_by("occurred_at"))
    decisions = ProposalDecision.objects.filter(tenant_id=tenant_id, decided_at__gte=start, decided_at__lt=end)
    autonomy = TenantAutonomy.objects.filter(tenant_id=tenant_id).first()
    autonomous_rows = list(autonomous)
    blocked_rows = list(blocked)
    return {
        "day": day.isoformat(),
        "opted_in": bool(autonomy and autonomy.opted_in),
        "kill_switches_on": sorted(f"{switch.action_type or 'tenant'}" for switch in
                                   KillSwitch.objects.filter(tenant_id=tenant_id, engaged=True)),
        "global_kill_switch_on": settings.REVPLAN_EXECUTION_DISABLED,
        "ran_on_its_own": {
            "count": len(autonomous_rows),
            "by_outcome": dict(Counter(intent.status for intent in autonomous_rows)),
            "items": [{"intent_id": str(i.id), "action_type": i.action_type, "account": i.account.name,
                       "status": i.status} for i in autonomous_rows[:LISTED]],
        },
        "overdue": {
            "count": len(overdue),
            "items": [{**item.as_dict(),
                       "overdue_hours": round((end - item.deadlines.due_at).total_seconds() / 3600, 1)}
                      for item in overdue[:LISTED]],
        },
        "waiting_for_people": {
            "count": len(waiting_steps),
            "items": [{"plan_id": str(item.plan_id), "step_id": str(item.step_id), "action_type": item.what,
                       "account": item.account_name, "due_at": item.deadlines.due_at.isoformat(),
                       "overdue": item.overdue(end)} for item in waiting_steps[:LISTED]],
        },
        "blocked": {
            "count": len(blocked_rows),
            "by_reason": dict(Counter(entry.reason_code for entry in blocked_rows)),
            "items": [{"plan_id": str(e.plan_id) if e.plan_id else None, "reason": e.reason_code,
                       "explanation": e.explanation} for e in blocked_rows[:LISTED]],
        },
        "proposals": {f"{decision}/{reason}": count for decision, reason, count in _decision_counts(decisions)},
        "ideas": _idea_outcomes(tenant_id, start=start, end=end),
        "evidence": _autonomy_evidence(tenant_id, start=start, end=end),
    }


# The review's changes of a mode, as the digest reports them.
EVIDENCE_CHANGES = ("PROMOTION_PROPOSED", "PROMOTION_CONFIRMED", "PROMOTION_DISMISSED", "PROMOTION_SUPERSEDED",
                    "AUTONOMY_DEMOTED")


def _autonomy_evidence(tenant_id: UUID, *, start: datetime, end: datetime) -> dict:
    """Agreement per action type in SHADOW mode (the shadow window to the day's end), the open promotions
    and the day's promotions and demotions (orchestrator.autonomy.review)."""
    in_shadow = set(ActionTypeAutonomy.objects.filter(tenant_id=tenant_id, mode=AutonomyMode.SHADOW)
                    .values_list("action_type", flat=True))
    agreement = shadow.agreement(tenant_id, since=end - timedelta(days=settings.REVPLAN_SHADOW_WINDOW_DAYS)) \
        if in_shadow else {}
    changes = PlanLedgerEntry.objects.filter(tenant_id=tenant_id, plan_id__isnull=True,
                                             event_type=EventType.AUTONOMY_CHANGED, reason_code__in=EVIDENCE_CHANGES,
                                             occurred_at__gte=start, occurred_at__lt=end).order_by("chain_seq")
    return {
        "shadow": [{"action_type": action_type, "agreed": counts["agreed"],
                    "decided": counts["would_run"]["decided"], "agreement": counts["agreement"],
                    "window_days": settings.REVPLAN_SHADOW_WINDOW_DAYS}
                   for action_type, counts in agreement.items() if action_type in in_shadow],
        "proposals_open": [{"proposal_id": str(proposal.id), "action_type": proposal.action_type,
                            "from_mode": proposal.from_mode, "to_mode": proposal.to_mode,
                            "agreed": proposal.evidence.get("agreed"), "decisions": proposal.evidence.get("decisions")}
                           for proposal in AutonomyProposal.objects.filter(
                               tenant_id=tenant_id, status=ProposalStatus.PROPOSED).order_by("proposed_at")],
        "changes_count": changes.count(),
        "changes": [{"reason": entry.reason_code, "explanation": entry.explanation} for entry in changes[:LISTED]],
    }


# What people did with revplan's ideas that day (the outcome taxonomy, DESIGN §5): proposals they rejected
# (a DRAFT aborted, with their reason) and plans they approved only after editing them.
IDEA_OUTCOMES = {"rejected": "IDEA_REJECTED", "edited": "IDEA_EDITED"}


def _idea_outcomes(tenant_id: UUID, *, start: datetime, end: datetime) -> dict:
    signals = list(AccountSignal.objects.filter(account__tenant_id=tenant_id, signal_type__in=IDEA_OUTCOMES.values(),
                                                observed_at__gte=start, observed_at__lt=end)
                   .select_related("account").order_by("observed_at", "id"))
    ideas = {}
    for key, signal_type in IDEA_OUTCOMES.items():
        rows = [signal for signal in signals if signal.signal_type == signal_type]
        ideas[key] = {"count": len(rows), "items": [
            {"plan_id": signal.payload.get("plan_id"), "account": signal.account.name,
             "plan_type": signal.payload.get("plan_type"), "reason": signal.payload.get("reason", "")}
            for signal in rows[:LISTED]]}
    return ideas


def _decision_counts(decisions):
    counts = Counter(decisions.values_list("decision", "reason"))
    return sorted((decision, reason, count) for (decision, reason), count in counts.items())


def render_text(summary: dict) -> str:
    lines = [f"What revplan's autopilot did on {summary['day']} (UTC)", ""]
    if not summary["opted_in"]:
        lines.append("This tenant has not opted in to autonomous execution: nothing ran on its own.")
    switches = summary["kill_switches_on"] + (["global"] if summary["global_kill_switch_on"] else [])
    lines.append(f"Kill switches on: {', '.join(switches)}." if switches else "No kill switch is on.")
    ran = summary["ran_on_its_own"]
    lines += ["", f"Ran on its own: {ran['count']}"]
    lines += [f"  - {item['action_type']} for {item['account']}: {item['status']}" for item in ran["items"]]
    overdue = summary.get("overdue") or {"count": 0, "items": []}
    lines += ["", f"Overdue for a person: {overdue['count']}"]
    lines += [f"  - {item['kind']} for {item['account']} ({item['plan_type']}, plan {item['plan_id']}): due "
              f"{item['due_at']}, {item['overdue_hours']} h ago" for item in overdue["items"]]
    waiting = summary["waiting_for_people"]
    lines += ["", f"Steps waiting for a person now: {waiting['count']}"]
    lines += [f"  - {item['action_type']} for {item['account']}" + (" (OVERDUE)" if item.get("overdue") else "")
              for item in waiting["items"]]
    blocked = summary["blocked"]
    lines += ["", f"Blocked or stopped: {blocked['count']}"]
    lines += [f"  - {item['reason']}: {item['explanation']}" for item in blocked["items"]]
    ideas = summary.get("ideas") or {}
    rejected, edited = ideas.get("rejected", {"count": 0, "items": []}), ideas.get("edited", {"count": 0, "items": []})
    lines += ["", f"Proposals people rejected: {rejected['count']}"]
    lines += [f"  - {item['plan_type']} for {item['account']} (plan {item['plan_id']}): {item['reason']}"
              for item in rejected["items"]]
    lines += ["", f"Plans approved after people edited them: {edited['count']}"]
    lines += [f"  - {item['plan_type']} for {item['account']} (plan {item['plan_id']})" for item in edited["items"]]
    evidence = summary.get("evidence") or {"shadow": [], "proposals_open": [], "changes_count": 0, "changes": []}
    lines += ["", "Shadow mode (what the policy would have run on its own, and how often people agreed):"
              if evidence["shadow"] else "Shadow mode: nothing judged yet."]
    lines += [f"  - {item['action_type']}: people approved {item['agreed']} of {item['decided']} as the policy saw "
              f"them" + (f" ({item['agreement']:.0%})" if item["agreement"] is not None else "")
              + f", last {item['window_days']} days" for item in evidence["shadow"]]
    lines += ["", f"Promotions waiting for your confirmation: {len(evidence['proposals_open'])}"]
    lines += [f"  - {item['action_type']}: {item['from_mode']} -> {item['to_mode']} ({item['agreed']} of "
              f"{item['decisions']} agreed)" for item in evidence["proposals_open"]]
    lines += ["", f"Autonomy changed by evidence: {evidence['changes_count']}"]
    lines += [f"  - {item['reason']}: {item['explanation']}" for item in evidence["changes"]]
    proposals = summary["proposals"]
    lines += ["", "Proposal triggers: " + (", ".join(f"{key} x{count}" for key, count in proposals.items())
                                           if proposals else "nothing proposed or gated")]
    return "\n".join(lines) + "\n"
