"""Admin views of the execution spine and autonomy: intents, tries, records, decisions and digests are
read-only; connector settings, action routes and autonomy settings are saved (and removed) through
their services, which let only the tenant's admins and ledger every change.

Connector secrets are write-only: a password-style input that is blank keeps the stored value, and
no page shows one — only whether it is set.

The plans' list gets its "blocked by" column here: the read model joins intents, so it lives above plans/.
"""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.html import format_html_join

from orchestrator.autonomy import services as autonomy
from orchestrator.autonomy.models import (
    ActionTypeAutonomy,
    AutonomyDigest,
    AutonomyUsage,
    ProposalDecision,
    TenantAutonomy,
)
from orchestrator.blocked_by import blocked_by_for
from orchestrator.execution import routing
from orchestrator.execution.cancel import intent_cancel
from orchestrator.execution.connectors.config import known_keys, validate_connector_settings
from orchestrator.execution.models import (
    ActionIntent,
    ActionRoute,
    ConnectorConfig,
    ConnectorName,
    ExecutionAttempt,
    InternalRecord,
)
from plans.admin import (
    FastLinksChangeList,
    ReadOnlyAdmin,
    RevenuePlanAdmin,
    ThroughServicesAdmin,
    ThroughServicesForm,
    administers,
    known_values_filter,
)
from plans.errors import DomainError
from plans.models import RevenuePlan
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
    list_filter = ["status", known_values_filter("action_type", ACTION_TYPES, title="action type"),
                   known_values_filter("connector", ConnectorName.values)]
    list_select_related = ["account"]
    search_fields = ["id", "account__name", "effect_key"]
    # Newest first through the (tenant, created_at) index.
    ordering = ["-created_at"]
    inlines = [ExecutionAttemptInline]
    actions = ["cancel_selected"]

    @admin.action(description="Cancel the selected actions that have not started (their plans wait for a resume)")
    def cancel_selected(self, request, queryset):
        # Each through the API's service, which checks the caller's role on each one's plan.
        for intent in queryset.order_by("created_at"):
            try:
                intent_cancel(intent_id=intent.pk, user=request.user, reason="cancelled in the console")
            except DomainError as error:
                self.message_user(request, f"{intent.action_type} {intent.pk}: not cancelled — {error.detail}",
                                  messages.ERROR)
            else:
                self.message_user(request, f"{intent.action_type} {intent.pk}: cancelled; its plan waits for a "
                                           "person's resume.", messages.SUCCESS)


@admin.register(InternalRecord)
class InternalRecordAdmin(ReadOnlyAdmin):
    list_display = ["title", "kind", "account", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["account"]


class _RemovedThroughServicesAdmin(ThroughServicesAdmin):
    """A setting a tenant admin may also remove: each removal through `remove` (the service), ledgered."""

    def remove(self, request, obj) -> None:
        raise NotImplementedError

    def has_delete_permission(self, request, obj=None):
        # Offered to the tenant's admins only; the service decides again.
        return super(ThroughServicesAdmin, self).has_delete_permission(request, obj) and (
            obj is None or administers(request.user, obj.tenant_id))

    def delete_model(self, request, obj):
        self.remove(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("tenant"):
            try:
                self.remove(request, obj)
            except DomainError as error:
                self.message_user(request, f"{obj}: not removed — {error.detail}", messages.ERROR)


# --- connector settings: secrets are write-only ---------------------------------------------------

CONNECTORS = list(ConnectorName.values)
SETTING_KEYS = sorted({key for connector in CONNECTORS for key in known_keys(connector)})
SECRET_KEYS = sorted({key for connector in CONNECTORS for key in routing.secret_keys(connector)})
PUBLIC_KEYS = [key for key in SETTING_KEYS if key not in SECRET_KEYS]


def _used_by(key: str) -> str:
    return "Used by " + ", ".join(connector for connector in CONNECTORS if key in known_keys(connector)) + "."


def _setting_fields() -> dict[str, forms.Field]:
    fields: dict[str, forms.Field] = {}
    for key in PUBLIC_KEYS:
        field_class = forms.FloatField if key == "timeout_seconds" else forms.CharField
        fields[key] = field_class(required=False, help_text=_used_by(key) + " Blank: not set.")
    for key in SECRET_KEYS:
        fields[key] = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False),
                                      help_text=_used_by(key))
        fields[f"clear_{key}"] = forms.BooleanField(required=False, label=f"Clear {key}",
                                                    help_text="Remove the stored value.")
    return fields


class _ConnectorConfigForm(ThroughServicesForm):
    """One input per setting of the connector; a secret's input is never filled in, and blank keeps it."""

    class Meta:
        model = ConnectorConfig
        fields = ["tenant", "connector"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stored = self.instance.settings if self.instance.pk else {}
        if self.instance.pk:  # the connector is fixed: only its own settings
            keys = set(known_keys(self.instance.connector))
            for name in list(self.fields):
                if name.removeprefix("clear_") in SETTING_KEYS and name.removeprefix("clear_") not in keys:
                    del self.fields[name]
        for name, field in list(self.fields.items()):
            if name in PUBLIC_KEYS:
                field.initial = stored.get(name)
            elif name in SECRET_KEYS:
                state = "Set — leave blank to keep it." if stored.get(name) else "Not set."
                field.help_text = f"{state} {field.help_text}"
            elif name.startswith("clear_") and not stored.get(name.removeprefix("clear_")):
                del self.fields[name]

    def check_with_services(self, tenant_id) -> None:
        connector = self.cleaned_data.get("connector") or self.instance.connector
        if not connector:
            return
        self.settings_change = {
            "settings": {key: self.cleaned_data[key] for key in PUBLIC_KEYS
                         if key in self.fields and self.cleaned_data.get(key) not in (None, "")},
            "secrets": {
                **{key: self.cleaned_data[key] for key in SECRET_KEYS if self.cleaned_data.get(key)},
                **{key: None for key in SECRET_KEYS if self.cleaned_data.get(f"clear_{key}")},
            },
        }
        current = self.instance.settings if self.instance.pk else {}
        after = routing.settings_after(connector, current, **self.settings_change)
        try:
            validate_connector_settings(connector, after)
        except ValidationError as error:
            for message in error.messages:  # each "<key>: <problem>": shown on that key's input
                key, _, problem = message.partition(": ")
                if key in self.fields:
                    self.add_error(key, problem)
                else:
                    self.add_error(None, message)
        # The model's clean() runs next (ModelForm validation) on what will be saved.
        self.instance.settings = after

    def _update_errors(self, errors):
        # The model's clean() reports the settings' problems under "settings", which is no input of this
        # form: check_with_services has reported the same problems key by key already.
        if hasattr(errors, "error_dict"):
            kept = {name: value for name, value in errors.error_dict.items() if name != "settings"}
            if not kept:
                return
            errors = ValidationError(kept)
        super()._update_errors(errors)


ConnectorConfigForm = type("ConnectorConfigForm", (_ConnectorConfigForm,), _setting_fields())


@admin.register(ConnectorConfig)
class ConnectorConfigAdmin(_RemovedThroughServicesAdmin):
    form = ConnectorConfigForm
    list_display = ["tenant", "connector", "shown_settings", "updated_at"]
    list_select_related = ["tenant"]

    @admin.display(description="settings (secrets masked)")
    def shown_settings(self, obj):
        shown = routing.masked_settings(obj.connector, obj.settings)
        return format_html_join(", ", "{}: {}", shown.items()) or "—"

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return [(None, {"fields": ["tenant", "connector", "shown_settings", "updated_at"]})]
        keys = set(known_keys(obj.connector)) if obj is not None else set(SETTING_KEYS)
        stored = obj.settings if obj is not None else {}
        secrets = []
        for key in SECRET_KEYS:
            if key in keys:
                secrets += [key, f"clear_{key}"] if stored.get(key) else [key]
        return [
            (None, {"fields": ["tenant", "connector"]}),
            ("Settings", {"fields": [key for key in PUBLIC_KEYS if key in keys],
                          "description": "Setting an endpoint means this tenant's own server, with only the "
                                         "settings below; without one, the deployment's connector is used."}),
            ("Secrets", {"fields": secrets,
                         "description": "Write-only: a stored secret is never shown. Leave blank to keep it."}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return ["tenant", "connector", "shown_settings", "updated_at"]
        return ["tenant", "connector"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        saved = routing.connector_config_set(tenant_id=obj.tenant_id, connector=obj.connector, user=request.user,
                                             **form.settings_change)
        obj.pk = saved.pk

    def remove(self, request, obj) -> None:
        routing.connector_config_delete(tenant_id=obj.tenant_id, connector=obj.connector, user=request.user)


class ActionRouteForm(ThroughServicesForm):
    action_type = forms.ChoiceField(choices=[(name, name) for name in sorted(ACTION_TYPES)])

    class Meta:
        model = ActionRoute
        fields = ["tenant", "action_type", "connector"]


@admin.register(ActionRoute)
class ActionRouteAdmin(_RemovedThroughServicesAdmin):
    form = ActionRouteForm
    list_display = ["tenant", "action_type", "connector"]
    list_select_related = ["tenant"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "action_type"] if obj else []

    def save_model(self, request, obj, form, change):
        saved = routing.action_route_set(tenant_id=obj.tenant_id, action_type=obj.action_type,
                                         connector=obj.connector, user=request.user)
        obj.pk = saved.pk

    def remove(self, request, obj) -> None:
        routing.action_route_delete(tenant_id=obj.tenant_id, action_type=obj.action_type, user=request.user)


# --- autonomy: settings are written through the services (authority check + ledger entry) ----------


class _AutonomySettingsAdmin(ThroughServicesAdmin):
    # No deletion: it would change autonomy without a ledger entry; set the mode instead.
    list_select_related = ["tenant"]


class ActionTypeAutonomyForm(ThroughServicesForm):
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


class TenantAutonomyForm(ThroughServicesForm):
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


# --- the plans' list with what blocks each ----------------------------------------------------------


class BlockedByChangeList(FastLinksChangeList):
    """Computes blocked_by for the page's plans at once (orchestrator.blocked_by: a few queries a page)."""

    def get_results(self, request):
        super().get_results(request)
        page = list(self.result_list)  # evaluated once: the rows the template renders are these objects
        blocked_by = blocked_by_for(page, now=timezone.now())
        for plan in page:
            plan.blocked_by = blocked_by[plan.id]


class RevenuePlanWithBlockedByAdmin(RevenuePlanAdmin):
    list_display = [*RevenuePlanAdmin.list_display, "blocked_by_column"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("steps")

    def get_changelist(self, request, **kwargs):
        return BlockedByChangeList

    @admin.display(description="blocked by")
    def blocked_by_column(self, plan):
        items = getattr(plan, "blocked_by", [])
        if not items:
            return "—"
        return format_html_join(" ", '<span class="blocked-by" data-code="{}" title="{}">{} ({})</span>',
                                ((item["code"], item["detail"], item["code"], item["waits_on"].lower())
                                 for item in items))


admin.site.unregister(RevenuePlan)
admin.site.register(RevenuePlan, RevenuePlanWithBlockedByAdmin)

# Circuit breakers: their own page (registered on import); likewise shadow decisions and autonomy proposals.
from orchestrator import admin_autonomy, admin_breakers  # noqa: E402, F401

# Stuck plans and deadline notices: their own lists (orchestrator.deadlines.admin, registered on import).
from orchestrator.deadlines import admin as deadlines_admin  # noqa: E402, F401
