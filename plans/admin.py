"""Django admin: tenants, accounts and read-only views of plans and the ledger.

Plan and ledger rows are never edited here: plans change only through plans.services (the
approvers' actions arrive with the admin console issue), the ledger never changes at all.
"""
from django.contrib import admin

from plans.models import Account, AccountSignal, KillSwitch, Membership, PlanLedgerEntry, PlanStep, RevenuePlan, Tenant


class TenantScopedAdmin(admin.ModelAdmin):
    """Staff see only their own tenants' rows (superusers see all): another tenant's row is a 404."""

    tenant_path = "tenant"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        tenant_ids = request.user.memberships.filter(is_active=True).values("tenant_id")
        return queryset.filter(**{f"{self.tenant_path}__in": tenant_ids})


class ReadOnlyAdmin(TenantScopedAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_path = "id"
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Account)
class AccountAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "external_id", "owner", "renewal_date"]
    list_filter = ["tenant"]
    list_select_related = ["tenant", "owner"]
    search_fields = ["name", "external_id"]
    # Ownership changes go through services.account_transfer, which pauses and ledgers plans.
    readonly_fields = ["owner"]


@admin.register(AccountSignal)
class AccountSignalAdmin(TenantScopedAdmin):
    tenant_path = "account__tenant"
    list_display = ["signal_type", "account", "observed_at"]
    list_filter = ["signal_type"]
    list_select_related = ["account"]


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "action_type", "engaged", "updated_at", "updated_by"]
    list_select_related = ["tenant"]


class PlanStepInline(admin.TabularInline):
    model = PlanStep
    extra = 0
    can_delete = False
    fields = ["sequence", "action_type", "status", "required", "risk_level", "attempts", "last_error", "skip_reason"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RevenuePlan)
class RevenuePlanAdmin(ReadOnlyAdmin):
    list_display = ["id", "plan_type", "account", "plan_status", "risk_level", "owner", "expires_at"]
    list_filter = ["plan_status", "plan_type", "risk_level", "tenant"]
    list_select_related = ["account", "owner"]
    search_fields = ["account__name", "objective"]
    inlines = [PlanStepInline]


@admin.register(PlanLedgerEntry)
class PlanLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "event_type", "plan_id", "actor", "reason_code", "chain_seq"]
    list_filter = ["event_type", "tenant"]
    search_fields = ["plan__id", "reason_code", "actor"]
    date_hierarchy = "occurred_at"
