"""Autonomy by evidence in the console, seen by any member (as in the API): the shadow decisions (the policy's
verdict beside the person's) and the promotions the daily review proposed, which a tenant admin confirms or
dismisses through orchestrator.autonomy.review (the API's rule and ledger entries)."""
from django.contrib import admin, messages

from orchestrator.autonomy.models import AutonomyProposal, ShadowDecision
from orchestrator.autonomy.review import proposal_decide
from plans.admin import ReadOnlyAdmin
from plans.admin_base import MembersSeeAdmin, known_values_filter
from plans.errors import DomainError
from plans.plan_types import ACTION_TYPES


@admin.register(ShadowDecision)
class ShadowDecisionAdmin(MembersSeeAdmin, ReadOnlyAdmin):
    list_display = ["decided_at", "action_type", "account", "would_run", "reason", "person_decision",
                    "person_decided_at"]
    list_filter = [known_values_filter("action_type", ACTION_TYPES, title="action type"), "would_run",
                   "person_decision"]
    list_select_related = ["account"]
    ordering = ["-decided_at", "-pk"]
    fields = ["tenant", "plan", "step_id", "attempt", "account", "action_type", "would_run", "reason", "explanation",
              "policy_version", "facts", "content_digest", "decided_at", "person_decision", "person_decided_by",
              "person_decided_at"]


@admin.register(AutonomyProposal)
class AutonomyProposalAdmin(MembersSeeAdmin, ReadOnlyAdmin):
    list_display = ["proposed_at", "tenant", "action_type", "from_mode", "to_mode", "status", "evidence_summary",
                    "decided_by", "decided_at"]
    list_filter = ["status", known_values_filter("action_type", ACTION_TYPES, title="action type")]
    list_select_related = ["tenant"]
    ordering = ["-proposed_at", "-pk"]
    actions = ["confirm", "dismiss"]

    @admin.display(description="evidence")
    def evidence_summary(self, proposal: AutonomyProposal) -> str:
        evidence = proposal.evidence or {}
        return (f"{evidence.get('agreed', '?')} of {evidence.get('decisions', '?')} agreed over "
                f"{evidence.get('window_days', '?')} days (needs {evidence.get('min_agreement', '?')} of "
                f"{evidence.get('min_decisions', '?')})")

    def _decide(self, request, queryset, *, confirm: bool) -> None:
        for proposal in queryset:
            try:
                proposal_decide(proposal_id=proposal.pk, user=request.user, confirm=confirm)
            except DomainError as error:
                self.message_user(request, f"{proposal.action_type}: not {'confirmed' if confirm else 'dismissed'} "
                                           f"— {error.detail}", messages.ERROR)
            else:
                self.message_user(request, f"{proposal.action_type}: "
                                           + (f"now {proposal.to_mode}." if confirm else "dismissed; the mode stays."),
                                  messages.SUCCESS)

    @admin.action(description="Confirm the selected promotions (the mode changes; ledgered with the evidence)")
    def confirm(self, request, queryset):
        self._decide(request, queryset, confirm=True)

    @admin.action(description="Dismiss the selected promotions (the mode stays)")
    def dismiss(self, request, queryset):
        self._decide(request, queryset, confirm=False)
