"""The admin's shared parts: tenant-scoped pages (rows, filters and foreign-key choices of the user's tenants),
read-only pages, and settings forms whose save goes through a service. plans.admin and orchestrator.admin build on
these; the scoping and write rules are described in plans.admin.
"""
from functools import cached_property
from urllib.parse import quote as url_quote

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.template.loader import select_template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.translation import gettext as _

from plans import services
from plans.authority import Verb, denial
from plans.errors import DomainError
from plans.models import Membership, Role, Tenant
from plans.pagination import BoundedCountPaginator
from plans.selectors import active_memberships, release_page, visible_tenant_id_list, visible_to

# The row checkbox of a list with actions, as Django's widget renders it (ModelAdmin.action_checkbox).
ROW_CHECKBOX = '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">'


def once_a_request(request, name: str, compute):
    """`compute()`, asked once a request: a page asks the same permission question of its models several times
    (the sidebar, the list, its actions), and each answer is a query."""
    answers = request.__dict__.setdefault("_revplan_answers", {})
    if name not in answers:
        answers[name] = compute()
    return answers[name]


def administered_tenants(user):
    """The tenants whose settings `user` may change (plans.authority's rule for ADMINISTER): the only ones a
    settings form offers. The services decide again on save."""
    roles = [role for role in Role if denial(Verb.ADMINISTER, role=role, user_id=user.pk) is None]
    return Tenant.objects.filter(
        id__in=active_memberships(user).filter(role__in=roles).values("tenant_id")).order_by("slug")


def administers(user, tenant_id) -> bool:
    return administered_tenants(user).filter(pk=tenant_id).exists()


def visible_users(queryset, user):
    """`queryset` of users narrowed to the members (active or not) of the user's tenants."""
    return queryset.filter(pk__in=visible_to(Membership.objects.all(), user).values("user_id"))


def released_once_rendered(response, rows):
    """`response` (a TemplateResponse), with the model `rows` it shows released (selectors.release_page) once it
    is rendered: the template reads their prefetched relations (a plan's steps and layers), and left linked they
    were cycles — a page of 100 open plans, ~7,000 objects — that waited for the collector's full pass, the admin
    pages' p95 (tests/bench/bench_read_side.py)."""
    response.add_post_render_callback(lambda _rendered: release_page(rows))
    return response


class TenantListFilter(admin.SimpleListFilter):
    """Filter by tenant, offering only the user's tenants (Django's own filter lists every tenant's slug)."""

    title = "tenant"
    parameter_name = "tenant"

    def __init__(self, request, params, model, model_admin):
        self.tenant_path = model_admin.tenant_path
        super().__init__(request, params, model, model_admin)

    def lookups(self, request, model_admin):
        tenants = visible_to(Tenant.objects.order_by("slug"), request.user, tenant_field="id")
        return [(str(tenant.pk), tenant.slug) for tenant in tenants]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.tenant_path: self.value()}) if self.value() else queryset


def known_values_filter(field_name: str, values, *, title: str | None = None) -> type[admin.SimpleListFilter]:
    """A list filter on `field_name` offering the values the code knows (a registry), not Django's SELECT DISTINCT
    over every row of the tenant, which grows with it. Same query parameter as Django's own (`<field>__exact`)."""

    class KnownValuesFilter(admin.SimpleListFilter):
        parameter_name = f"{field_name}__exact"

        def lookups(self, request, model_admin):
            return [(value, value) for value in sorted(values)]

        def queryset(self, request, queryset):
            return queryset.filter(**{field_name: self.value()}) if self.value() else queryset

    KnownValuesFilter.title = title or field_name.replace("_", " ")
    return KnownValuesFilter


class FastLinksChangeList(ChangeList):
    """A list whose row links cost one reverse() a page, not one a row (a 100-row page: 100 URL resolutions)."""

    _PLACEHOLDER = "revplan-row-id"  # unreserved characters only: reverse() leaves it as it is

    @cached_property
    def _change_url_around_id(self) -> tuple[str, str]:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=(self._PLACEHOLDER,),
                      current_app=self.model_admin.admin_site.name)
        before, _placeholder, after = url.partition(self._PLACEHOLDER)
        return before, after

    def url_for_result(self, result):
        # Django's URL: the admin-quoted id, then quoted as reverse() quotes the URL it builds.
        before, after = self._change_url_around_id
        row_id = url_quote(str(quote(getattr(result, self.pk_attname))), safe=RFC3986_SUBDELIMS + "/~:@")
        return f"{before}{row_id}{after}"


class TenantScopedAdmin(admin.ModelAdmin):
    """Rows, foreign-key choices and the tenant filter of the user's tenants only.

    `tenant_path`: the lookup from the model to its tenant. A tenant offered in a form is one the user
    administers (the only tenants a write may name); any other related object is one the related
    model's own admin would show the user.
    """

    tenant_path = "tenant"
    # A changelist's cost does not grow with the tenant (plans.pagination): the count stops at its limit, and
    # the "N total" beside a filtered count (a second count of every row) is not shown.
    paginator = BoundedCountPaginator
    show_full_result_count = False

    def get_queryset(self, request):
        # The user's tenants as values, read once a request: the lists' indexes lead with the tenant, and
        # PostgreSQL walks one in order only for a tenant id it knows (selectors.visible_tenant_id_list).
        tenant_ids = once_a_request(request, "tenant_ids", lambda: visible_tenant_id_list(request.user))
        return super().get_queryset(request).filter(**{f"{self.tenant_path}__in": tenant_ids})

    @cached_property
    def change_list_template(self) -> str:
        # The first of Django's candidates that exists, found once for the process: looked up on each request,
        # every missing one raised TemplateDoesNotExist, whose traceback kept the request's frames — ~1,000
        # objects a list page — as a cycle for the collector. A subclass may still name its own.
        opts = self.model._meta
        return select_template([f"admin/{opts.app_label}/{opts.model_name}/change_list.html",
                                f"admin/{opts.app_label}/change_list.html", "admin/change_list.html"]).template.name

    def get_changelist(self, request, **kwargs):
        return FastLinksChangeList

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = (getattr(response, "context_data", None) or {}).get("cl")
        if changelist is None:  # a redirect, an action's own page
            return response
        return released_once_rendered(response, changelist.result_list)

    def action_checkbox(self, obj):
        # The same markup as Django's, without rendering a widget template per row: that was a third of a
        # 100-row list's CPU time (the intents' page: 20 of 62 ms).
        return format_html(ROW_CHECKBOX, ACTION_CHECKBOX_NAME, str(obj.pk),
                           format_html(_("Select this object for an action - {}"), str(obj)))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if related is Tenant:
            kwargs["queryset"] = administered_tenants(request.user)
        elif related in self.admin_site._registry:
            kwargs["queryset"] = self.admin_site._registry[related].get_queryset(request)
        else:
            kwargs["queryset"] = related._default_manager.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        related = db_field.related_model
        registered = self.admin_site._registry.get(related)
        kwargs["queryset"] = registered.get_queryset(request) if registered else related._default_manager.none()
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class MembersSeeAdmin(TenantScopedAdmin):
    """Seen by every active member of a tenant on the staff (their tenant's rows), as the API lets any member
    read them; no model permission needed. Writes stay the subclass's (actions through services)."""

    def is_member(self, request) -> bool:
        # Once a request: every admin page's sidebar asks for this page's permissions, three questions.
        return request.user.is_active and request.user.is_staff and once_a_request(
            request, "member", lambda: active_memberships(request.user).exists())

    def has_module_permission(self, request):
        return self.is_member(request)

    def has_view_permission(self, request, obj=None):
        return self.is_member(request)


class ReadOnlyAdmin(TenantScopedAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ThroughServicesForm(forms.ModelForm):
    """Refuses, as a form error, a change the caller's role may not make; the service checks again."""

    revplan_user = None  # set per request by ThroughServicesAdmin.get_form

    def tenant_id(self):
        tenant = self.cleaned_data.get("tenant") or (self.instance.tenant if self.instance.tenant_id else None)
        return tenant.pk if tenant is not None else None

    def clean(self):
        data = super().clean()
        tenant_id = self.tenant_id()
        if tenant_id is not None:
            try:
                services.require_admin(user=self.revplan_user, tenant_id=tenant_id)
                self.check_with_services(tenant_id)
            except DomainError as error:
                raise forms.ValidationError(error.detail) from None
        return data

    def check_with_services(self, tenant_id) -> None:
        """The service's own checks that can be made before saving (DomainError: a form error)."""


class ThroughServicesAdmin(TenantScopedAdmin):
    """A settings page whose save calls a service (save_model); nothing is deleted behind the ledger."""

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.revplan_user = request.user
        return form

    def has_delete_permission(self, request, obj=None):
        return False
