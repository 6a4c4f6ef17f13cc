"""Django admin: tenants, accounts, the approvers' plan console and a read-only ledger.

Plan rows are never edited as fields here: every change is an action page (plans.admin_views)
that calls plans.services, with the same authority rules as the API. The ledger never changes.
"""
from django.contrib import admin, messages
from django.urls import path
from django.utils import timezone

from plans import admin_views, console, services, why
from plans.errors import DomainError
from plans.models import Account, AccountSignal, KillSwitch, Membership, PlanLedgerEntry, RevenuePlan, Role, Tenant


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


@admin.register(RevenuePlan)
class RevenuePlanAdmin(ReadOnlyAdmin):
    list_display = ["account", "plan_type", "plan_status", "risk_level", "owner", "expires_at", "created_at"]
    list_filter = ["plan_status", "plan_type", "risk_level", "tenant"]
    list_select_related = ["account", "owner"]
    search_fields = ["account__name", "account__external_id", "objective", "owner__username"]
    ordering = ["-created_at"]
    fieldsets = [
        (None, {"fields": ["account", "plan_type", "plan_status", "objective", "owner", "risk_level", "expires_at",
                           "version"]}),
        ("Details", {"classes": ["collapse"], "fields": [
            "tenant", "plan_type_version", "constraints", "created_by", "created_at", "updated_at", "approved_by",
            "approved_at", "activated_at", "paused_at", "completed_at", "aborted_at", "expired_at",
            "completion_reason", "stop_reason_code", "stop_reason_detail", "next_run_at",
        ]}),
    ]
    actions = ["approve_selected"]
    change_form_template = "admin/plans/revenueplan/change_form.html"
    change_list_template = "admin/plans/revenueplan/change_list.html"

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(lambda request, *args, **kwargs: view(self, request, *args, **kwargs))

        return [
            path("open/", wrap(admin_views.open_plans), name="plans_revenueplan_open"),
            path("<uuid:object_id>/act/<slug:action>/", wrap(admin_views.plan_action),
                 name="plans_revenueplan_action"),
            path("<uuid:object_id>/steps/<uuid:step_id>/<slug:action>/", wrap(admin_views.step_action),
                 name="plans_revenueplan_step_action"),
            *super().get_urls(),
        ]

    def get_actions(self, request):
        actions = super().get_actions(request)
        approver_roles = {Role.PLAN_APPROVER, Role.TENANT_ADMIN}
        if not request.user.memberships.filter(is_active=True, role__in=approver_roles).exists():
            actions.pop("approve_selected", None)
        return actions

    @admin.action(description="Approve selected draft plans")
    def approve_selected(self, request, queryset):
        # Each plan on its own: one refusal does not stop the others, and each gets its own message.
        for plan in queryset.select_related("account"):
            try:
                services.plan_approve(plan_id=plan.id, user=request.user)
            except DomainError as error:
                self.message_user(request, f"{plan.account.name}: not approved — "
                                           f"{admin_views.refusal_message(error)}", messages.ERROR)
            else:
                self.message_user(request, f"{plan.account.name}: approved.", messages.SUCCESS)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        plan = self.get_object(request, object_id)
        if plan is not None:
            steps = sorted(plan.steps.all(), key=lambda step: step.sequence)
            role = console.role_of(request.user, plan)
            verdict = console.gate_verdict(plan)
            extra_context = {
                **(extra_context or {}),
                "plan_actions": [(name, admin_views.PLAN_ACTIONS[name].title)
                                 for name in console.plan_actions_for(request.user, plan, role=role)],
                "steps": [(step, [(name, admin_views.STEP_ACTIONS[name].title)
                                  for name in console.step_actions_for(request.user, plan, step, role=role)])
                          for step in steps],
                "why": why.plan_why(plan, now=timezone.now()),
                "verdict": verdict,
                "ledger_entries": PlanLedgerEntry.objects.filter(plan_id=plan.id).order_by("chain_seq"),
            }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(PlanLedgerEntry)
class PlanLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "event_type", "plan_id", "actor", "reason_code", "chain_seq"]
    list_filter = ["event_type", "tenant"]
    search_fields = ["plan__id", "reason_code", "actor"]
    date_hierarchy = "occurred_at"
