"""Execution status routes under /api/v1/."""
from django.urls import path

from orchestrator.api.views import AccountExecutionsView, ActionStatusView

urlpatterns = [
    path("actions/<uuid:intent_id>/status", ActionStatusView.as_view(), name="action-status"),
    path("accounts/<uuid:account_id>/executions", AccountExecutionsView.as_view(), name="account-executions"),
]
