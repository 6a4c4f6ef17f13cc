"""Admin views of the execution spine and autonomy: intents, tries, decisions and digests are read-only;
connector settings are editable, and autonomy settings are, through the services."""
from django import forms
from django.contrib import admin

from orchestrator.autonomy import services as autonomy
from orchestrator.autonomy.models import (
    ActionTypeAutonomy,
    AutonomyDigest,
    AutonomyUsage,
    ProposalDecision,
    TenantAutonomy,
)
from orchestrator.execution.models import ActionIntent, ActionRoute, ConnectorConfig, ExecutionAttempt, InternalRecord
from plans import services
from plans.admin import ReadOnlyAdmin, TenantScopedAdmin
from plans.errors import DomainError
from plans.models import Role, Tenant
from plans.plan_types import ACTION_TYPES


class ExecutionAttemptInline(admin.TabularInline):
    model = ExecutionAttempt
    extra = 0
    can_delete = False
    fields = ["number", "outcome", "delay_before_seconds", "started_at", "finished_at", "error", "external_ids"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ActionIntent)
class ActionIntentAdmin(ReadOnlyAdmin):
    list_display = ["id", "action_type", "account", "status", "connector", "attempts", "created_at", "finished_at"]
    list_filter = ["status", "action_type", "connector"]
    list_select_related = ["account"]
    search_fields = ["id", "account__name", "effect_key"]
    inlines = [ExecutionAttemptInline]


@admin.register(ConnectorConfig)
class ConnectorConfigAdmin(TenantScopedAdmin):
    list_display = ["tenant", "connector", "updated_at"]
    list_select_related = ["tenant"]


@admin.register(ActionRoute)
class ActionRouteAdmin(TenantScopedAdmin):
    list_display = ["tenant", "action_type", "connector"]
    list_select_related = ["tenant"]


@admin.register(InternalRecord)
class InternalRecordAdmin(ReadOnlyAdmin):
    list_display = ["title", "kind", "account", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["account"]


# --- autonomy: settings are written through the services (authority check + ledger entry) ----------


class _ThroughServicesForm(forms.ModelForm):
    """Refuses, as a form error, a change the caller's role may not make; the service checks again."""

    revplan_user = None  # set per request by get_form

    def clean(self):
        data = super().clean()
        tenant = data.get("tenant") or getattr(self.instance, "tenant", None)
        if tenant is not None:
            try:
                services.require_admin(user=self.revplan_user, tenant_id=tenant.pk)
            except DomainError as error:
                raise forms.ValidationError(error.detail) from None
        return data


class _AutonomySettingsAdmin(TenantScopedAdmin):
    list_select_related = ["tenant"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant" and not request.user.is_superuser:
            # Only the tenants this user administers: the others' names are not theirs to see.
            kwargs["queryset"] = Tenant.objects.filter(
                memberships__user=request.user, memberships__is_active=True, memberships__role=Role.TENANT_ADMIN)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.revplan_user = request.user
        return form

    def has_delete_permission(self, request, obj=None):
        return False  # a deletion would change autonomy without a ledger entry; set the mode instead


class ActionTypeAutonomyForm(_ThroughServicesForm):
    action_type = forms.ChoiceField(choices=[(name, name) for name in sorted(ACTION_TYPES)])
    max_per_day = forms.IntegerField(min_value=0, max_value=autonomy.MAX_COUNT)

    class Meta:
        model = ActionTypeAutonomy
        fields = ["tenant", "action_type", "mode", "max_per_day"]


@admin.register(ActionTypeAutonomy)
class ActionTypeAutonomyAdmin(_AutonomySettingsAdmin):
    form = ActionTypeAutonomyForm
    list_display = ["tenant", "action_type", "mode", "max_per_day", "updated_at", "updated_by"]
    list_filter = ["mode", "action_type"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "action_type"] if obj else []

    def save_model(self, request, obj, form, change):
        saved = autonomy.action_type_autonomy_set(tenant_id=obj.tenant_id, user=request.user,
                                                  action_type=obj.action_type, mode=obj.mode,
                                                  max_per_day=obj.max_per_day)
        obj.pk = saved.pk


class TenantAutonomyForm(_ThroughServicesForm):
    opted_in = forms.BooleanField(required=False, help_text="Let steps in AUTO_EXECUTE mode run on their own.")
    max_per_account_per_day = forms.IntegerField(min_value=0, max_value=autonomy.MAX_COUNT)
    max_proposals_per_day = forms.IntegerField(min_value=0, max_value=autonomy.MAX_COUNT)
    proposal_cooldown_days = forms.IntegerField(min_value=0, max_value=autonomy.MAX_COUNT)

    class Meta:
        model = TenantAutonomy
        fields = ["tenant", "max_per_account_per_day", "max_proposals_per_day", "proposal_cooldown_days"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["opted_in"].initial = self.instance.opted_in if self.instance.pk else False


@admin.register(TenantAutonomy)
class TenantAutonomyAdmin(_AutonomySettingsAdmin):
    form = TenantAutonomyForm
    list_display = ["tenant", "opted_in_at", "opted_in_by", "max_per_account_per_day", "max_proposals_per_day",
                    "proposal_cooldown_days", "updated_at"]
    list_select_related = ["tenant", "opted_in_by"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "opted_in_at", "opted_in_by"] if obj else ["opted_in_at", "opted_in_by"]

    def save_model(self, request, obj, form, change):
        limits = {name: form.cleaned_data[name] for name in autonomy.TENANT_LIMITS}
        saved = autonomy.tenant_autonomy_set(tenant_id=obj.tenant_id, user=request.user,
                                             opted_in=form.cleaned_data["opted_in"], **limits)
        obj.pk = saved.pk


@admin.register(ProposalDecision)
class ProposalDecisionAdmin(ReadOnlyAdmin):
    list_display = ["decided_at", "account", "decision", "reason", "plan", "error"]
    list_filter = ["decision", "reason"]
    list_select_related = ["account", "plan"]
    ordering = ["-decided_at"]


@admin.register(AutonomyDigest)
class AutonomyDigestAdmin(ReadOnlyAdmin):
    list_display = ["day", "tenant", "emailed_to", "created_at"]
    list_select_related = ["tenant"]
    fields = ["tenant", "day", "text", "emailed_to", "created_at"]
    ordering = ["-day"]


@admin.register(AutonomyUsage)
class AutonomyUsageAdmin(ReadOnlyAdmin):
    list_display = ["day", "tenant", "account", "action_type", "used"]
    list_select_related = ["tenant", "account"]
    ordering = ["-day"]
