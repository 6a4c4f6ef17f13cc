"""Execution status API: tenant-scoped reads of action intents (thin: selectors and serializers)."""
import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.exceptions import ValidationError

from orchestrator.execution.models import ActionIntent, IntentStatus
from orchestrator.execution.selectors import intents_for_user
from plans import selectors
from revplan.api.common import ApiPagination, errors
from revplan.api.serializers import INCLUDE_TRIES, ActionIntentDetailSerializer

INCLUDABLE = (INCLUDE_TRIES,)

INCLUDE_PARAMETER = OpenApiParameter(
    "include", OpenApiTypes.STR, enum=list(INCLUDABLE), required=False,
    description="`tries`: add `try_history`, each connector call with its classified error. Without it, `tries` "
    "summarises them (count, last try). Any other value is a 400.",
)


class IncludeMixin:
    """`?include=` validated: a known value adds detail, an unknown one is a 400 (not silently ignored)."""

    def get_serializer_context(self):
        values = [value for raw in self.request.query_params.getlist("include") for value in raw.split(",") if value]
        unknown = sorted(set(values) - set(INCLUDABLE))
        if unknown:
            raise ValidationError({"include": [f"Unknown value {', '.join(unknown)}; known: {', '.join(INCLUDABLE)}."]})
        return {**super().get_serializer_context(), "include": frozenset(values)}


class ActionStatusView(IncludeMixin, generics.RetrieveAPIView):
    """The state of one action intent: a sentence for its outcome, its tries summarised (each with ?include=tries)."""

    serializer_class = ActionIntentDetailSerializer
    lookup_url_kwarg = "intent_id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return ActionIntent.objects.none()
        return intents_for_user(self.request.user)

    @extend_schema(parameters=[INCLUDE_PARAMETER],
                   responses={200: ActionIntentDetailSerializer, **errors(400, 401, 404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ExecutionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=IntentStatus.choices)

    class Meta:
        model = ActionIntent
        fields = ["status"]


class AccountExecutionsView(IncludeMixin, generics.ListAPIView):
    """The account's action intents, newest first; filter with ?status=, each try with ?include=tries."""

    serializer_class = ActionIntentDetailSerializer
    filterset_class = ExecutionFilter
    pagination_class = ApiPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return ActionIntent.objects.none()
        account = selectors.account_for_user(self.request.user, self.kwargs["account_id"])
        return intents_for_user(self.request.user).filter(account_id=account.id)

    @extend_schema(parameters=[INCLUDE_PARAMETER],
                   responses={200: ActionIntentDetailSerializer(many=True), **errors(400, 401, 404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
