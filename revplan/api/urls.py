"""API routes under /api/v1/: every path ends in a slash."""
from django.urls import path
from drf_spectacular.utils import extend_schema, extend_schema_view

from revplan.api import accounts, actions, autonomy, breakers, executions, graph, incidents, plans, signals
from revplan.api import autonomy_evidence as evidence
from revplan.api import integration_tokens as tokens
from revplan.api.auth import MeView, TokenView
from revplan.api.inbox import InboxView


def legacy(view_class):
    """The same view under a path without its trailing slash (how these two routes were first published):
    answered for clients that still call it, left out of the schema."""
    return extend_schema_view(get=extend_schema(exclude=True))(type(f"Legacy{view_class.__name__}", (view_class,), {}))


urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    path("me/", MeView.as_view(), name="api-me"),
    path("inbox/", InboxView.as_view(), name="inbox"),
    path("incidents/", incidents.IncidentListView.as_view(), name="incident-list"),
    path("incidents/retry/", incidents.IncidentRetryView.as_view(), name="incident-retry"),
    path("plans/", plans.PlanListCreateView.as_view(), name="plan-list"),
    path("plans/propose/", plans.PlanProposeView.as_view(), name="plan-propose"),
    path("plans/<uuid:plan_id>/", plans.PlanDetailView.as_view(), name="plan-detail"),
    path("plans/<uuid:plan_id>/approve/", plans.PlanApproveView.as_view(), name="plan-approve"),
    path("plans/<uuid:plan_id>/reapprove/", plans.PlanReapproveView.as_view(), name="plan-reapprove"),
    path("plans/<uuid:plan_id>/pause/", plans.PlanPauseView.as_view(), name="plan-pause"),
    path("plans/<uuid:plan_id>/resume/", plans.PlanResumeView.as_view(), name="plan-resume"),
    path("plans/<uuid:plan_id>/abort/", plans.PlanAbortView.as_view(), name="plan-abort"),
    path("plans/<uuid:plan_id>/revise/", plans.PlanReviseView.as_view(), name="plan-revise"),
    path("plans/<uuid:plan_id>/steps/<uuid:step_id>/approve/", plans.StepApproveView.as_view(), name="step-approve"),
    path("plans/<uuid:plan_id>/steps/<uuid:step_id>/skip/", plans.StepSkipView.as_view(), name="step-skip"),
    path("plans/<uuid:plan_id>/steps/<uuid:step_id>/retry/", plans.StepRetryView.as_view(), name="step-retry"),
    path("plans/<uuid:plan_id>/ledger/", plans.PlanLedgerView.as_view(), name="plan-ledger"),
    path("plans/<uuid:plan_id>/why/", plans.PlanWhyView.as_view(), name="plan-why"),
    path("plans/<uuid:plan_id>/graph/", graph.PlanGraphView.as_view(), name="plan-graph"),
    path("accounts/", accounts.AccountListView.as_view(), name="account-list"),
    path("accounts/<uuid:account_id>/", accounts.AccountDetailView.as_view(), name="account-detail"),
    path("accounts/<uuid:account_id>/executions/", executions.AccountExecutionsView.as_view(),
         name="account-executions"),
    path("accounts/<uuid:account_id>/signals/", signals.AccountSignalsView.as_view(), name="account-signals"),
    path("accounts/<uuid:account_id>/transfer/", accounts.AccountTransferView.as_view(), name="account-transfer"),
    path("actions/<uuid:intent_id>/status/", executions.ActionStatusView.as_view(), name="action-status"),
    path("actions/<uuid:intent_id>/cancel/", actions.ActionCancelView.as_view(), name="action-cancel"),
    path("actions/<uuid:intent_id>/compensate/", actions.ActionCompensateView.as_view(), name="action-compensate"),
    path("actions/<uuid:intent_id>/why/", autonomy.ActionWhyView.as_view(), name="action-why"),
    path("autonomy/", autonomy.AutonomySettingsView.as_view(), name="autonomy-settings"),
    path("autonomy/action-types/<str:action_type>/", autonomy.ActionTypeAutonomyView.as_view(),
         name="autonomy-action-type"),
    path("autonomy/shadow/", evidence.ShadowReportView.as_view(), name="autonomy-shadow"),
    path("autonomy/backtest/", evidence.BacktestView.as_view(), name="autonomy-backtest"),
    path("autonomy/proposals/", evidence.ProposalListView.as_view(), name="autonomy-proposals"),
    path("autonomy/proposals/<uuid:proposal_id>/confirm/", evidence.ProposalConfirmView.as_view(),
         name="autonomy-proposal-confirm"),
    path("autonomy/proposals/<uuid:proposal_id>/dismiss/", evidence.ProposalDismissView.as_view(),
         name="autonomy-proposal-dismiss"),
    path("kill-switches/", autonomy.KillSwitchesView.as_view(), name="kill-switches"),
    path("breakers/", breakers.BreakersView.as_view(), name="breakers"),
    path("breakers/<str:connector>/force/", breakers.BreakerForceView.as_view(), name="breaker-force"),
    path("autopilot/timeline/", autonomy.AutopilotTimelineView.as_view(), name="autopilot-timeline"),
    path("autopilot/digests/", autonomy.DigestListView.as_view(), name="autopilot-digests"),
    path("ledger/export/", autonomy.LedgerExportView.as_view(), name="ledger-export"),
    path("integration-tokens/", tokens.IntegrationTokenListCreateView.as_view(), name="integration-token-list"),
    path("integration-tokens/<uuid:token_id>/rotate/", tokens.IntegrationTokenRotateView.as_view(),
         name="integration-token-rotate"),
    path("integration-tokens/<uuid:token_id>/revoke/", tokens.IntegrationTokenRevokeView.as_view(),
         name="integration-token-revoke"),
    # Published without the slash before the HTTP layer was unified.
    path("accounts/<uuid:account_id>/executions", legacy(executions.AccountExecutionsView).as_view()),
    path("actions/<uuid:intent_id>/status", legacy(executions.ActionStatusView).as_view()),
]
