"""Signals API: tell revplan what happened to an account (POST), and read what it was told (GET).

POST is open to a person with RECORD_SIGNAL authority (SELLER and up) or to an integration token of the
account's tenant; a token may do nothing else: its authentication class reads it for POST only, and every
other method and route answers a Bearer credential 401. Whether a request came with a token is decided in
one place, `integration_token_of`.
"""
import django_filters
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings

from plans import selectors, services
from plans.models import AccountSignal, IntegrationToken
from plans.services.signals import MAX_EXTERNAL_ID_LENGTH, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, signal_account
from plans.signals import OUTSIDE_SIGNAL_TYPES, TAXONOMY
from revplan.api.authentication import IntegrationTokenAuthentication
from revplan.api.common import ApiPagination, StrictSerializer, errors


def integration_token_of(request) -> IntegrationToken | None:
    """The integration token the request was authenticated with, if it was (request.auth holds it; request.user
    is then whatever the token's authentication class says, and is not a member acting)."""
    return request.auth if isinstance(request.auth, IntegrationToken) else None


def signal_actor(request):
    """Who records the signal: the token, else the person."""
    return integration_token_of(request) or request.user


class PersonOrSignalToken(BasePermission):
    """An authenticated person for any method; an integration token for POST only (it writes signals, nothing
    else). The person's role is the service's check (RECORD_SIGNAL), after the tenant's (404)."""

    message = "An integration token may only post signals."

    def has_permission(self, request, view) -> bool:
        if integration_token_of(request) is not None:
            return request.method == "POST"
        return bool(request.user and request.user.is_authenticated)


class SignalSerializer(serializers.ModelSerializer):
    signal_id = serializers.IntegerField(source="id", read_only=True)
    account_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = AccountSignal
        fields = ["signal_id", "account_id", "signal_type", "observed_at", "source", "external_id", "payload",
                  "recorded_by", "created_at"]
        read_only_fields = fields


_TYPES_HELP = "; ".join(f"{code}: {TAXONOMY[code].meaning}" for code in sorted(OUTSIDE_SIGNAL_TYPES))


class SignalInputSerializer(StrictSerializer):
    signal_type = serializers.CharField(
        max_length=64, help_text=f"One of the taxonomy's types that may come from outside — {_TYPES_HELP}. "
                                 "The system's own types (ACTION_EXECUTED, ACTION_FAILED, EXECUTION_*, IDEA_*) are "
                                 "refused (400 SIGNAL_TYPE_RESERVED); an unknown type is 400 UNKNOWN_SIGNAL_TYPE.")
    observed_at = serializers.DateTimeField(required=False, help_text="When it happened (default: now); not in the "
                                                                      "future.")
    source = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", max_length=64,
        help_text="The system that observed it, e.g. crm, zendesk (not 'system', which is revplan's own).")
    external_id = serializers.CharField(
        max_length=MAX_EXTERNAL_ID_LENGTH, required=False, allow_blank=True, default="", trim_whitespace=False,
        help_text="The source's own id for it. The same (source, external_id) again in the tenant is the same "
                  "signal: 200 with the one first recorded. Without one, every post is a new signal.")
    payload = serializers.JSONField(
        required=False, default=dict,
        help_text=f"A JSON object, at most {MAX_PAYLOAD_BYTES} bytes and {MAX_PAYLOAD_DEPTH} levels deep.")

    def validate_payload(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("The payload must be a JSON object.")
        return value


class SignalFilter(django_filters.FilterSet):
    signal_type = django_filters.ChoiceFilter(choices=[(code, code) for code in sorted(TAXONOMY)])

    class Meta:
        model = AccountSignal
        fields = ["signal_type"]


class AccountSignalsView(GenericAPIView):
    """An account's signals: what revplan was told about it, and what it observed itself."""

    serializer_class = SignalSerializer
    filterset_class = SignalFilter
    pagination_class = ApiPagination
    permission_classes = [PersonOrSignalToken]
    # The integration token's class first: it answers only a Bearer credential (and only for POST), so a
    # person's token and session work as on every other view.
    authentication_classes = [IntegrationTokenAuthentication, *api_settings.DEFAULT_AUTHENTICATION_CLASSES]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return AccountSignal.objects.none()
        account = selectors.account_for_user(self.request.user, self.kwargs["account_id"])
        return account.signals.order_by("-observed_at", "-id")

    @extend_schema(
        summary="List an account's signals, newest first",
        responses={200: SignalSerializer(many=True), **errors(400, 401, 403, 404, 429)},
    )
    def get(self, request, account_id):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(SignalSerializer(page, many=True).data)

    @extend_schema(
        summary="Record a signal about an account",
        request=SignalInputSerializer,
        responses={
            201: OpenApiResponse(SignalSerializer, description="recorded"),
            200: OpenApiResponse(SignalSerializer, description="already recorded under this (source, "
                                                               "external_id): the first signal, unchanged"),
            **errors(400, 401, 403, 404, 409, 413, 429),
        },
        examples=[OpenApiExample("A renewal committed in the CRM", request_only=True, value={
            "signal_type": "RENEWAL_COMMITTED", "source": "crm", "external_id": "opp-4711-committed",
            "observed_at": "2026-11-30T15:04:00Z", "payload": {"opportunity": "opp-4711", "amount_usd": 48000},
        })],
    )
    def post(self, request, account_id):
        actor = signal_actor(request)
        # Another tenant's account is a 404 before the body is looked at: a 400 would say nothing about scoping.
        signal_account(account_id=account_id, actor=actor)
        data = SignalInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        recorded = services.signal_record(account_id=account_id, actor=actor, **data.validated_data)
        return Response(SignalSerializer(recorded.signal).data,
                        status=status.HTTP_201_CREATED if recorded.created else status.HTTP_200_OK)
