"""Circuit breakers in the console: every member of a tenant sees its breakers (state, why, since when,
until when); a tenant admin forces one open or closed through orchestrator.breakers.services (the API's
rule and ledger entry, BREAKER_FORCED), from the list's actions or the "force a breaker" page. A reason is
required: it goes to the ledger."""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm

from orchestrator.breakers.config import GUARDED_CONNECTORS
from orchestrator.breakers.models import BreakerState, CircuitBreaker
from orchestrator.breakers.services import FORCIBLE, breaker_force
from plans.admin import ThroughServicesAdmin, ThroughServicesForm, administered_tenants, once_a_request
from plans.admin_base import MembersSeeAdmin
from plans.errors import DomainError


class BreakerActionForm(ActionForm):
    reason = forms.CharField(required=False, max_length=2000, label="Reason",
                             help_text="Why the breaker is forced (goes to the ledger).")


class BreakerForceForm(ThroughServicesForm):
    """The "add" page is "force a breaker": a (tenant, connector) may have no row yet (CLOSED)."""

    connector = forms.ChoiceField(choices=[(name, name) for name in GUARDED_CONNECTORS])
    state = forms.ChoiceField(choices=[(state, state) for state in FORCIBLE])
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = CircuitBreaker
        fields = ["tenant", "connector", "state"]

    def validate_unique(self):
        pass  # forcing a breaker that has a row changes that row: the service's upsert, not a second one


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(MembersSeeAdmin, ThroughServicesAdmin):
    form = BreakerForceForm
    action_form = BreakerActionForm
    actions = ["force_open", "force_closed"]
    list_display = ["tenant", "connector", "state", "forced", "changed_at", "changed_by", "explanation", "retry_at",
                    "times_opened"]
    list_filter = ["state", "connector", "forced"]
    list_select_related = ["tenant"]
    ordering = ["tenant__slug", "connector"]
    readonly_fields = ["tenant", "connector", "state", "forced", "changed_at", "changed_by", "reason_code",
                       "explanation", "evidence", "retry_at", "probe_holder", "times_opened"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def has_add_permission(self, request):
        return self.is_member(request) and once_a_request(
            request, "administers", lambda: administered_tenants(request.user).exists())

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        saved = breaker_force(tenant_id=obj.tenant_id, connector=obj.connector, state=form.cleaned_data["state"],
                              user=request.user, reason=form.cleaned_data["reason"])
        obj.pk = saved.pk

    def _force(self, request, queryset, state: str) -> None:
        reason = (request.POST.get("reason") or "").strip()
        if not reason:
            self.message_user(request, "Say why (the Reason box next to the action): nothing was forced.",
                              messages.ERROR)
            return
        for breaker in queryset.select_related("tenant"):
            try:
                breaker_force(tenant_id=breaker.tenant_id, connector=breaker.connector, state=state,
                              user=request.user, reason=reason)
            except DomainError as error:
                self.message_user(request, f"{breaker.tenant} {breaker.connector}: not forced — {error.detail}",
                                  messages.ERROR)
            else:
                self.message_user(request, f"{breaker.tenant} {breaker.connector}: forced {state.lower()}.",
                                  messages.SUCCESS)

    @admin.action(description="Force open the selected breakers (nothing is sent until forced closed)")
    def force_open(self, request, queryset):
        self._force(request, queryset, BreakerState.OPEN)

    @admin.action(description="Force closed the selected breakers (the plans they hold run on)")
    def force_closed(self, request, queryset):
        self._force(request, queryset, BreakerState.CLOSED)
