"""Integration tokens in the console: a tenant admin lists their tenants' tokens and creates, rotates and
revokes them through plans.services (the same rules and ledger entries as the API).

Only a tenant admin sees the page (whatever Django permissions a staff user holds): a token is a
credential into the tenant. The list never shows a secret or a hash. After create and rotate the
secret is shown on the page that answers the POST, once: not in a message, which would sit in the
session or a cookie until the next page, and with `Cache-Control: no-store` so no cache keeps it.
"""
from uuid import UUID

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from plans import services
from plans.admin import TenantListFilter, TenantScopedAdmin
from plans.admin_views import refusal_message
from plans.errors import DomainError
from plans.models import IntegrationToken, Tenant
from plans.selectors import active_memberships
from plans.services.integration_tokens import NAME_MAX_LENGTH, integration_token_state, managing_roles


def managed_tenants(user):
    """The tenants whose integration tokens `user` may manage (plans.authority's rule)."""
    return Tenant.objects.filter(
        id__in=active_memberships(user).filter(role__in=managing_roles()).values("tenant_id")).order_by("slug")


class TokenCreateForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.none())
    name = forms.CharField(max_length=NAME_MAX_LENGTH, help_text="The system it is for, e.g. “Salesforce sync”.")
    expires_at = forms.DateTimeField(required=False, label="Expires at (UTC)",
                                     help_text="YYYY-MM-DD HH:MM; empty: until revoked.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenant"].queryset = managed_tenants(user)


@admin.register(IntegrationToken)
class IntegrationTokenAdmin(TenantScopedAdmin):
    """Read-only rows; Create, Rotate and Revoke are confirm pages that call the services."""

    list_display = ["name", "tenant", "key_prefix", "state", "created_by", "created_at", "expires_at", "revoked_at",
                    "last_used_at", "token_actions"]
    list_filter = [TenantListFilter]
    list_select_related = ["tenant", "created_by"]
    search_fields = ["name", "key_prefix"]
    ordering = ["-created_at"]
    fields = readonly_fields = ["name", "tenant", "key_prefix", "state", "created_by", "created_at", "expires_at",
                                "revoked_at", "last_used_at"]
    change_list_template = "admin/plans/integrationtoken/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(tenant__in=managed_tenants(request.user))

    def _manages_any(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and managed_tenants(request.user).exists()

    def has_module_permission(self, request):
        return self._manages_any(request)

    def has_view_permission(self, request, obj=None):
        return self._manages_any(request)

    def has_add_permission(self, request):
        return False  # the Create page, not Django's add form: the secret must be made by the service

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="state")
    def state(self, token: IntegrationToken) -> str:
        return integration_token_state(token).value.lower()

    @admin.display(description="")
    def token_actions(self, token: IntegrationToken) -> str:
        if token.revoked_at is not None:
            return ""
        return format_html('<a href="{}">Rotate</a> · <a href="{}">Revoke</a>',
                           reverse("admin:plans_integrationtoken_rotate", args=[token.pk]),
                           reverse("admin:plans_integrationtoken_revoke", args=[token.pk]))

    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(lambda request, **kwargs: function(self, request, **kwargs))

        return [
            path("create/", view(token_create), name="plans_integrationtoken_create"),
            path("<uuid:object_id>/rotate/", view(token_rotate), name="plans_integrationtoken_rotate"),
            path("<uuid:object_id>/revoke/", view(token_revoke), name="plans_integrationtoken_revoke"),
            *super().get_urls(),
        ]


def _context(model_admin, request, **extra) -> dict:
    return {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
            "changelist_url": reverse("admin:plans_integrationtoken_changelist"), **extra}


def _secret_page(model_admin, request, token: IntegrationToken, secret: str, *, title: str) -> HttpResponse:
    response = TemplateResponse(request, "admin/plans/integrationtoken/secret.html",
                                _context(model_admin, request, title=title, token=token, secret=secret))
    response["Cache-Control"] = "no-store"
    return response


def token_create(model_admin, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    form = TokenCreateForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            token, secret = services.integration_token_create(
                tenant_id=form.cleaned_data["tenant"].pk, name=form.cleaned_data["name"],
                expires_at=form.cleaned_data["expires_at"], user=request.user)
        except DomainError as error:
            form.add_error(None, refusal_message(error))
        else:
            return _secret_page(model_admin, request, token, secret, title=f"Integration token {token.name} created")
    return TemplateResponse(request, "admin/plans/integrationtoken/create.html",
                            _context(model_admin, request, title="Create an integration token", form=form))


def _confirm(model_admin, request: HttpRequest, object_id: UUID, *, verb: str, act) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    token = get_object_or_404(model_admin.get_queryset(request), pk=object_id)
    if request.method == "POST":
        try:
            return act(token)
        except DomainError as error:
            messages.error(request, refusal_message(error))
            return redirect("admin:plans_integrationtoken_changelist")
    return TemplateResponse(request, "admin/plans/integrationtoken/confirm.html",
                            _context(model_admin, request, title=f"{verb} integration token {token.name}",
                                     token=token, verb=verb))


def token_rotate(model_admin, request: HttpRequest, object_id: UUID) -> HttpResponse:
    def act(token):
        new, secret = services.integration_token_rotate(token_id=token.pk, user=request.user)
        return _secret_page(model_admin, request, new, secret, title=f"Integration token {new.name} rotated")

    return _confirm(model_admin, request, object_id, verb="Rotate", act=act)


def token_revoke(model_admin, request: HttpRequest, object_id: UUID) -> HttpResponse:
    def act(token):
        services.integration_token_revoke(token_id=token.pk, user=request.user)
        messages.success(request, f"Integration token {token.name} ({token.key_prefix}…) revoked.")
        return redirect("admin:plans_integrationtoken_changelist")

    return _confirm(model_admin, request, object_id, verb="Revoke", act=act)
