"""Execution status API: tenant-scoped reads of action intents (thin: selectors and serializers)."""
import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics

from orchestrator.api.serializers import ActionIntentStatusSerializer
from orchestrator.execution.models import ActionIntent, IntentStatus
from plans.api.serializers import ErrorSerializer
from plans.errors import NotFound
from plans.models import Account

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="malformed request"),
    401: OpenApiResponse(ErrorSerializer, description="not authenticated"),
    404: OpenApiResponse(ErrorSerializer, description="unknown, or another tenant's"),
}


def visible_intents(user):
    """Intents of the caller's tenants, with what the status serializer reads, in three queries a page."""
    tenant_ids = user.memberships.filter(is_active=True).values("tenant_id")
    return (
        ActionIntent.objects.filter(tenant_id__in=tenant_ids)
        .prefetch_related("execution_attempts")
        .order_by("-created_at", "id")
    )


class ActionStatusView(generics.RetrieveAPIView):
    """The state of one action intent, its tries, and a sentence explaining it."""

    serializer_class = ActionIntentStatusSerializer
    lookup_url_kwarg = "intent_id"

    def get_queryset(self):
        return visible_intents(self.request.user)

    @extend_schema(responses={200: ActionIntentStatusSerializer, **ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ExecutionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=IntentStatus.choices)

    class Meta:
        model = ActionIntent
        fields = ["status"]


class AccountExecutionsView(generics.ListAPIView):
    """The account's action intents, newest first; filter with ?status=."""

    serializer_class = ActionIntentStatusSerializer
    filterset_class = ExecutionFilter

    def get_queryset(self):
        account_visible = Account.objects.filter(
            pk=self.kwargs["account_id"], tenant__memberships__user=self.request.user,
            tenant__memberships__is_active=True,
        ).exists()
        if not account_visible:
            raise NotFound("NOT_FOUND", "The account does not exist.")
        return visible_intents(self.request.user).filter(account_id=self.kwargs["account_id"])

    @extend_schema(responses={200: ActionIntentStatusSerializer(many=True), **ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
