"""Admin views of the execution spine: intents and their tries are read-only; connector settings are editable."""
from django.contrib import admin

from orchestrator.execution.models import ActionIntent, ActionRoute, ConnectorConfig, ExecutionAttempt, InternalRecord
from plans.admin import ReadOnlyAdmin, TenantScopedAdmin


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
