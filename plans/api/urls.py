"""API routes under /api/v1/."""
from django.urls import path

from plans.api import accounts, plans
from plans.api.views import MeView, TokenView

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    path("me/", MeView.as_view(), name="api-me"),
    path("plans/", plans.PlanListCreateView.as_view(), name="plan-list"),
    path("plans/propose/", plans.PlanProposeView.as_view(), name="plan-propose"),
    path("plans/<uuid:plan_id>/", plans.PlanDetailView.as_view(), name="plan-detail"),
    path("plans/<uuid:plan_id>/approve/", plans.PlanApproveView.as_view(), name="plan-approve"),
    path("plans/<uuid:plan_id>/pause/", plans.PlanPauseView.as_view(), name="plan-pause"),
    path("plans/<uuid:plan_id>/resume/", plans.PlanResumeView.as_view(), name="plan-resume"),
    path("plans/<uuid:plan_id>/abort/", plans.PlanAbortView.as_view(), name="plan-abort"),
    path("plans/<uuid:plan_id>/revise/", plans.PlanReviseView.as_view(), name="plan-revise"),
    path("plans/<uuid:plan_id>/steps/<uuid:step_id>/approve/", plans.StepApproveView.as_view(), name="step-approve"),
    path("plans/<uuid:plan_id>/steps/<uuid:step_id>/skip/", plans.StepSkipView.as_view(), name="step-skip"),
    path("plans/<uuid:plan_id>/ledger/", plans.PlanLedgerView.as_view(), name="plan-ledger"),
    path("plans/<uuid:plan_id>/why/", plans.PlanWhyView.as_view(), name="plan-why"),
    path("accounts/", accounts.AccountListView.as_view(), name="account-list"),
    path("accounts/<uuid:account_id>/", accounts.AccountDetailView.as_view(), name="account-detail"),
]
