"""The approvers' console pages beyond Django's defaults: confirm-and-act pages for plan and step
actions, the open plans overview, and an account's change of owner.

Each action is one call into plans.services, so the admin obeys exactly the rules the API does;
the pages only decide which buttons to show (plans.console) and turn refusals into messages.
"""
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from plans import console, selectors, services
from plans.admin_base import released_once_rendered
from plans.authority import OWNER_ROLES, Verb, denial
from plans.errors import DomainError
from plans.models import Account, PlanStep, RevenuePlan, Role
from plans.pagination import BoundedCountPaginator

OPEN_PLANS_PER_PAGE = 100


@dataclass(frozen=True)
class ActionSpec:
    title: str
    reason: str  # "required", "optional" or "" (no reason asked)
    call: Callable[..., RevenuePlan]


PLAN_ACTIONS = {
    "approve": ActionSpec("Approve", "", lambda plan_id, user, reason, version: services.plan_approve(
        plan_id=plan_id, user=user, expected_version=version)),
    "reapprove": ActionSpec("Reapprove (on the current facts)", "", lambda plan_id, user, reason, version: (
        services.plan_reapprove(plan_id=plan_id, user=user, expected_version=version))),
    "pause": ActionSpec("Pause", "optional", lambda plan_id, user, reason, version: services.plan_pause(
        plan_id=plan_id, user=user, reason=reason, expected_version=version)),
    "resume": ActionSpec("Resume", "", lambda plan_id, user, reason, version: services.plan_resume(
        plan_id=plan_id, user=user, expected_version=version)),
    "revise": ActionSpec("Revise (back to draft)", "optional", lambda plan_id, user, reason, version: (
        services.plan_revise(plan_id=plan_id, user=user, reason=reason, expected_version=version))),
    "abort": ActionSpec("Abort", "required", lambda plan_id, user, reason, version: services.plan_abort(
        plan_id=plan_id, user=user, reason=reason, expected_version=version)),
}
STEP_ACTIONS = {
    "approve": ActionSpec("Approve step", "", lambda plan_id, step_id, user, reason, version: services.step_approve(
        plan_id=plan_id, step_id=step_id, user=user, expected_version=version)),
    "skip": ActionSpec("Skip step", "required", lambda plan_id, step_id, user, reason, version: services.step_skip(
        plan_id=plan_id, step_id=step_id, user=user, reason=reason, expected_version=version)),
    "retry": ActionSpec("Retry step", "optional", lambda plan_id, step_id, user, reason, version: services.step_retry(
        plan_id=plan_id, step_id=step_id, user=user, reason=reason, expected_version=version)),
}


class ActionForm(forms.Form):
    # The version the person saw: if the plan changed since, the service refuses with a conflict.
    version = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=False, max_length=2000)

    def __init__(self, *args, reason: str, **kwargs):
        super().__init__(*args, **kwargs)
        if not reason:
            del self.fields["reason"]
        else:
            self.fields["reason"].required = reason == "required"


def refusal_message(error: DomainError) -> str:
    reasons = "; ".join(f"{reason.code}: {reason.detail}" for reason in error.reasons)
    return f"{error.code}: {error.detail}" + (f" ({reasons})" if reasons else "")


def _confirm_and_act(model_admin, request: HttpRequest, plan: RevenuePlan, spec: ActionSpec, act, *,
                     step: PlanStep | None = None) -> HttpResponse:
    change_url = reverse("admin:plans_revenueplan_change", args=[plan.pk])
    if request.method == "POST":
        form = ActionForm(request.POST, reason=spec.reason)
        if form.is_valid():
            try:
                act(form.cleaned_data.get("reason", ""), form.cleaned_data["version"])
            except DomainError as error:
                messages.error(request, refusal_message(error))
            else:
                messages.success(request, f"{spec.title}: done.")
            return redirect(change_url)
    else:
        form = ActionForm(initial={"version": plan.version}, reason=spec.reason)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": f"{spec.title} — {plan.account.name}",
        "plan": plan,
        "step": step,
        "spec": spec,
        "form": form,
        "change_url": change_url,
    }
    return TemplateResponse(request, "admin/plans/revenueplan/confirm_action.html", context)


def plan_action(model_admin, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
    spec = PLAN_ACTIONS.get(action)
    if spec is None:
        raise Http404("no such action")
    plan = get_object_or_404(model_admin.get_queryset(request).select_related("account"), pk=object_id)
    return _confirm_and_act(model_admin, request, plan, spec,
                            lambda reason, version: spec.call(plan.id, request.user, reason, version))


def step_action(model_admin, request: HttpRequest, object_id: str, step_id: UUID, action: str) -> HttpResponse:
    spec = STEP_ACTIONS.get(action)
    if spec is None:
        raise Http404("no such action")
    plan = get_object_or_404(model_admin.get_queryset(request).select_related("account"), pk=object_id)
    step = get_object_or_404(PlanStep, plan=plan, step_id=step_id)
    return _confirm_and_act(model_admin, request, plan, spec,
                            lambda reason, version: spec.call(plan.id, step.step_id, request.user, reason, version),
                            step=step)


def open_plans(model_admin, request: HttpRequest) -> HttpResponse:
    # A page at a time: the page's cost stays that of OPEN_PLANS_PER_PAGE plans, however many are open.
    page = BoundedCountPaginator(console.open_plans_of(model_admin.get_queryset(request)),
                                 OPEN_PLANS_PER_PAGE).get_page(request.GET.get("p"))
    rows = console.open_plan_rows(page.object_list)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Active plans",
        "rows": rows,
        "page": page,
    }
    return released_once_rendered(TemplateResponse(request, "admin/plans/revenueplan/open_plans.html", context),
                                  [row.plan for row in rows])


# --- an account's owner -------------------------------------------------------------------------------


def may_change_owner(user, account: Account) -> bool:
    """Whether to offer the Change owner page (services.account_transfer decides)."""
    membership = selectors.membership_for(user, account.tenant_id)
    return membership is not None and denial(Verb.TRANSFER_ACCOUNT, role=Role(membership.role),
                                             user_id=user.pk) is None


class AccountOwnerForm(forms.Form):
    new_owner = forms.ModelChoiceField(queryset=None, label="New owner")
    reason = forms.CharField(max_length=1000, label="Reason", help_text="Kept in the ledger with the change.")

    def __init__(self, *args, account: Account, **kwargs):
        super().__init__(*args, **kwargs)
        # The tenant's active members who may own accounts; the service checks the same on save.
        self.fields["new_owner"].queryset = get_user_model().objects.filter(
            memberships__tenant_id=account.tenant_id, memberships__is_active=True,
            memberships__role__in=OWNER_ROLES).order_by("username")


def account_owner(model_admin, request: HttpRequest, object_id: UUID) -> HttpResponse:
    account = get_object_or_404(model_admin.get_queryset(request).select_related("owner"), pk=object_id)
    change_url = reverse("admin:plans_account_change", args=[account.pk])
    if request.method == "POST":
        form = AccountOwnerForm(request.POST, account=account)
        if form.is_valid():
            new_owner = form.cleaned_data["new_owner"]
            try:
                services.account_transfer(account_id=account.id, new_owner_id=new_owner.pk, user=request.user,
                                          reason=form.cleaned_data["reason"])
            except DomainError as error:
                messages.error(request, refusal_message(error))
            else:
                messages.success(request, f"Owner: {new_owner.username}.")
            return redirect(change_url)
    else:
        form = AccountOwnerForm(initial={"new_owner": account.owner_id}, account=account)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": f"Change owner — {account.name}",
        "account": account,
        "form": form,
        "change_url": change_url,
    }
    return TemplateResponse(request, "admin/plans/account/change_owner.html", context)
