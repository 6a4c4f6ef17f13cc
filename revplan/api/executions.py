"""Execution status API: tenant-scoped reads of action intents (thin: selectors and serializers)."""
import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics

from orchestrator.execution.models import ActionIntent, IntentStatus
from orchestrator.execution.selectors import intents_for_user
from plans import selectors
from revplan.api.common import ApiPagination, errors
from revplan.api.serializers import ActionIntentDetailSerializer


class ActionStatusView(generics.RetrieveAPIView):
    """The state of one action intent, its connector tries, and a sentence explaining it."""

    serializer_class = ActionIntentDetailSerializer
    lookup_url_kwarg = "intent_id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return ActionIntent.objects.none()
        return intents_for_user(self.request.user)

    @extend_schema(responses={200: ActionIntentDetailSerializer, **errors(401, 404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ExecutionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=IntentStatus.choices)

    class Meta:
        model = ActionIntent
        fields = ["status"]


class AccountExecutionsView(generics.ListAPIView):
    """The account's action intents, newest first; filter with ?status=."""

    serializer_class = ActionIntentDetailSerializer
    filterset_class = ExecutionFilter
    pagination_class = ApiPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return ActionIntent.objects.none()
        account = selectors.account_for_user(self.request.user, self.kwargs["account_id"])
        return intents_for_user(self.request.user).filter(account_id=account.id)

    @extend_schema(responses={200: ActionIntentDetailSerializer(many=True), **errors(400, 401, 404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
