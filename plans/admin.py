"""Django admin: the approvers' plan console, memberships, and read-only tenants, accounts, signals and ledger.

Scoping: every page shows only the rows of the user's tenants (plans.selectors.visible_to, the one
tenant-visibility rule — superusers are no exception), and so do its list filters and foreign-key
choices; another tenant's row is a "does not exist". Django's own User page shows a staff user only
the members of their tenants; groups are the superusers' alone, and API tokens have no page.

Writes: nothing is saved here directly. Plan and step changes are action pages (plans.admin_views)
that call plans.services; an account's owner changes through services.account_transfer and a
membership through services.membership_add / membership_update — the same authority rules as the
API, each change in the ledger. Tenants, accounts and signals are read-only. The ledger never changes.
"""
from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from plans import admin_views, console, previews, services, why
from plans.admin_base import (  # noqa: F401 (re-exported: the other apps' admins build on these)
    FastLinksChangeList,
    ReadOnlyAdmin,
    TenantListFilter,
    TenantScopedAdmin,
    ThroughServicesAdmin,
    ThroughServicesForm,
    administered_tenants,
    administers,
    known_values_filter,
    once_a_request,
    visible_users,
)
from plans.admin_inbox import inbox as inbox_page
from plans.authority import APPROVERS
from plans.errors import DomainError
from plans.graph import step_graph_svg
from plans.models import (
    Account,
    AccountSignal,
    KillSwitch,
    Membership,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    RevenuePlan,
    Tenant,
)
from plans.plan_types import PLAN_TYPES
from plans.selectors import OPEN_LAYERS, active_memberships, open_layers_prefetch
from plans.services import approvals
from plans.services.layers import LIFTED_BY
from plans.services.tenancy import require_an_admin_stays, require_joinable

# The console is revplan's, not "Django administration".
admin.site.site_header = "revplan"
admin.site.site_title = "revplan"
admin.site.index_title = "Plans, approvals and the ledger"
# The index is the approvers' landing page: what needs their input first (plans.admin_inbox).
admin.site.index_template = "admin/plans/index.html"


# --- tenants and memberships ----------------------------------------------------------------------


class MembershipInline(admin.TabularInline):
    """The tenant's members, to look at: they change on the Memberships page, through the services."""

    model = Membership
    extra = 0
    fields = readonly_fields = ["user", "role", "is_active", "created_at"]
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    tenant_path = "id"
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


class MembershipAddForm(ThroughServicesForm):
    username = forms.CharField(max_length=150, help_text="The person's login; they must have a user already.")

    class Meta:
        model = Membership
        fields = ["tenant", "username", "role"]

    def check_with_services(self, tenant_id) -> None:
        if self.cleaned_data.get("username"):
            require_joinable(tenant_id=tenant_id, username=self.cleaned_data["username"])


class MembershipChangeForm(ThroughServicesForm):
    class Meta:
        model = Membership
        fields = ["role", "is_active"]

    def check_with_services(self, tenant_id) -> None:
        # self.instance still holds the saved values here: the form's own are applied after clean().
        if self.cleaned_data.get("role"):
            require_an_admin_stays(self.instance, role=self.cleaned_data["role"],
                                   is_active=self.cleaned_data.get("is_active", False))


@admin.register(Membership)
class MembershipAdmin(ThroughServicesAdmin):
    """Add a member, change their role, deactivate them: a tenant admin's, through the services."""

    list_display = ["user", "tenant", "role", "is_active", "created_at"]
    list_filter = [TenantListFilter, "role", "is_active"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username"]

    def get_form(self, request, obj=None, **kwargs):
        kwargs["form"] = MembershipChangeForm if obj else MembershipAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["user", "tenant", "role", "is_active", "created_at"] if obj else ["tenant", "username", "role"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        editable = {"role", "is_active"} if self.has_change_permission(request, obj) else set()
        return [name for name in self.get_fields(request, obj) if name not in editable]

    def save_model(self, request, obj, form, change):
        if change:
            services.membership_update(membership_id=obj.pk, user=request.user, role=obj.role,
                                       is_active=obj.is_active)
        else:
            saved = services.membership_add(tenant_id=obj.tenant_id, username=form.cleaned_data["username"],
                                            role=obj.role, user=request.user)
            obj.pk, obj.user_id, obj.is_active = saved.pk, saved.user_id, saved.is_active


# --- accounts and what is observed about them -----------------------------------------------------


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    """Read-only; the owner changes on its own page (Change owner), through services.account_transfer."""

    list_display = ["name", "tenant", "external_id", "owner", "renewal_date"]
    list_filter = [TenantListFilter]
    list_select_related = ["tenant", "owner"]
    search_fields = ["name", "external_id"]
    change_form_template = "admin/plans/account/change_form.html"

    def get_urls(self):
        owner_view = self.admin_site.admin_view(
            lambda request, object_id: admin_views.account_owner(self, request, object_id))
        return [path("<uuid:object_id>/owner/", owner_view, name="plans_account_owner"), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        account = self.get_object(request, object_id)
        if account is not None:
            extra_context = {**(extra_context or {}),
                             "may_change_owner": admin_views.may_change_owner(request.user, account)}
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(AccountSignal)
class AccountSignalAdmin(ReadOnlyAdmin):
    """Read-only: signals are recorded by services.signal_record (the execution spine, the API, the import)."""

    tenant_path = "account__tenant"
    list_display = ["signal_type", "account", "observed_at", "source", "external_id", "recorded_by"]
    # No filter by source: its choices would be every tenant's sources, not the caller's.
    list_filter = ["signal_type"]
    search_fields = ["external_id"]
    list_select_related = ["account"]


# --- plans and the ledger -------------------------------------------------------------------------


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "action_type", "engaged", "updated_at", "updated_by"]
    list_select_related = ["tenant"]


@admin.register(RevenuePlan)
class RevenuePlanAdmin(ReadOnlyAdmin):
    list_display = ["account", "plan_type", "plan_status", "pause_layers_column", "risk_level", "owner", "expires_at",
                    "created_at"]
    list_filter = ["plan_status", known_values_filter("plan_type", PLAN_TYPES), "risk_level", TenantListFilter]
    list_select_related = ["account", "owner"]
    # Each row carries its blocked_by and pause layers: 50 rows keep a page's cost well under 250 ms.
    list_per_page = 50
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
            path("inbox/", wrap(inbox_page), name="plans_revenueplan_inbox"),
            path("<uuid:object_id>/act/<slug:action>/", wrap(admin_views.plan_action),
                 name="plans_revenueplan_action"),
            path("<uuid:object_id>/steps/<uuid:step_id>/<slug:action>/", wrap(admin_views.step_action),
                 name="plans_revenueplan_step_action"),
            *super().get_urls(),
        ]

    def get_queryset(self, request):
        # The open layers with the page, one query for all its rows (the list shows them; why reads them too).
        return super().get_queryset(request).prefetch_related(open_layers_prefetch())

    @admin.display(description="pause layers")
    def pause_layers_column(self, plan):
        layers = getattr(plan, OPEN_LAYERS, [])
        if plan.plan_status != PlanStatus.PAUSED or not layers:
            return "—"
        return format_html_join(", ", '<span class="pause-layer" data-kind="{}" title="{}">{}</span>',
                                ((layer.kind, layer.explanation, layer.kind) for layer in layers))

    def get_actions(self, request):
        actions = super().get_actions(request)
        # Asked once a request: a changelist asks for its actions three times.
        if not once_a_request(request, "approves",
                              lambda: active_memberships(request.user).filter(role__in=APPROVERS).exists()):
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
            step_previews, dependencies = previews.previews_for(steps), console.step_dependencies(steps)
            for step in steps:  # what each step's approval covered, and whether it still holds
                step.approval = approvals.step_approval(step)
                step.preview, step.dependencies = step_previews.get(step.step_id), dependencies[step.step_id]
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
                # Built from escaped text only (plans.graph), so it goes into the page as markup.
                "step_graph": mark_safe(step_graph_svg(plan, steps)),
                "approval": approvals.plan_approval(plan, steps),
                # each layer with who or what lifts it (the open ones), and the ones lifted before, newest first
                "pause_layers": [(layer, LIFTED_BY[layer.kind]) for layer in services.open_layers(plan)],
                "layer_history": PauseLayer.objects.filter(plan_id=plan.id, lifted_at__isnull=False)
                .order_by("-lifted_at", "-id"),
                "verdict": verdict,
                "ledger_entries": PlanLedgerEntry.objects.filter(plan_id=plan.id).order_by("chain_seq"),
            }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(PlanLedgerEntry)
class PlanLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "event_type", "plan_id", "actor", "reason_code", "chain_seq"]
    list_filter = ["event_type", TenantListFilter]
    search_fields = ["plan__id", "reason_code", "actor"]
    # Newest first through the (tenant, occurred_at) index. No date hierarchy: its year links are a SELECT DISTINCT
    # over every entry of the tenant on each page (a second at a few million entries).
    ordering = ["-occurred_at"]


# --- Django's own: users, groups, API tokens -----------------------------------------------------


class SuperuserWritesAdmin:
    """Only superusers add, change or delete here, whatever permissions a staff user holds."""

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class ScopedUserAdmin(SuperuserWritesAdmin, UserAdmin):
    """Superusers manage users in full. Another staff user sees, read-only, the members of their tenants:
    name and e-mail, not the password hash, groups or permissions."""

    staff_fieldsets = [(None, {"fields": ["username"]}),
                       ("Personal info", {"fields": ["first_name", "last_name", "email"]}),
                       ("Status", {"fields": ["is_active", "last_login", "date_joined"]})]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else visible_users(queryset, request.user)

    def get_fieldsets(self, request, obj=None):
        return super().get_fieldsets(request, obj) if request.user.is_superuser else self.staff_fieldsets

    def get_list_filter(self, request):
        return super().get_list_filter(request) if request.user.is_superuser else ["is_active"]


class SuperuserOnlyAdmin(SuperuserWritesAdmin):
    """Not tenant data: shown to superusers only, whatever permissions a staff user holds."""

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.none()


class SuperuserGroupAdmin(SuperuserOnlyAdmin, GroupAdmin):
    """Groups grant permissions across every tenant: the operator's to manage."""


for model, model_admin in ((get_user_model(), ScopedUserAdmin), (Group, SuperuserGroupAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)

# DRF's token page lists every key, a credential, to whoever may view tokens: the admin has no token page.
# Tokens belong to the HTTP layer (revplan.api): issued by POST /api/v1/auth/token/, revoked by DELETE.
# Looked up by name, not imported: plans/ holds no HTTP code.
if apps.is_installed("rest_framework.authtoken") and admin.site.is_registered(
        token_model := apps.get_model("authtoken", "TokenProxy")):
    admin.site.unregister(token_model)

# Integration tokens: a tenant admin's page of their own (registered on import).
from plans import admin_tokens  # noqa: E402, F401
