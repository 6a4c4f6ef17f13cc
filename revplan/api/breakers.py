"""Circuit breakers API: every guarded connector's breaker (crm, calendar) for the tenant (any member
reads), and a tenant admin's forced open or close (ledgered BREAKER_FORCED). Thin: a serializer checks the
form, orchestrator.breakers does the work. `?tenant=<id>` picks the tenant when the caller belongs to several."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from orchestrator.autonomy.selectors import tenant_for_user
from orchestrator.breakers.config import GUARDED_CONNECTORS
from orchestrator.breakers.models import BreakerState
from orchestrator.breakers.selectors import breakers_overview
from orchestrator.breakers.services import FORCIBLE, breaker_force
from revplan.api.autonomy import TENANT_PARAMETER
from revplan.api.common import WRITE_ERRORS, StrictSerializer, errors, validated
from revplan.api.parsers import JSONParser


class WindowSerializer(serializers.Serializer):
    tries = serializers.IntegerField()
    failures = serializers.IntegerField(help_text="transient failures (5xx, 429, timeouts, connection errors)")


class ThresholdsSerializer(serializers.Serializer):
    failure_rate = serializers.FloatField()
    min_tries = serializers.IntegerField()
    window_seconds = serializers.IntegerField()
    cool_down_seconds = serializers.FloatField()


class BreakerSerializer(serializers.Serializer):
    connector = serializers.ChoiceField(choices=list(GUARDED_CONNECTORS))
    state = serializers.ChoiceField(choices=BreakerState.choices)
    forced = serializers.BooleanField(help_text="forced open by a tenant admin: it stays open until forced closed")
    changed_at = serializers.DateTimeField(allow_null=True)
    changed_by = serializers.CharField(allow_blank=True)
    reason_code = serializers.CharField(allow_blank=True)
    explanation = serializers.CharField(allow_blank=True)
    retry_at = serializers.DateTimeField(allow_null=True, help_text="OPEN: when a probe may be let through")
    times_opened = serializers.IntegerField()
    held_plans = serializers.IntegerField(help_text="plans it holds with a BREAKER pause layer")
    window = WindowSerializer(allow_null=True, help_text="the sliding window's counts now (null: Redis unavailable)")
    thresholds = ThresholdsSerializer()


class BreakersSerializer(serializers.Serializer):
    tenant_id = serializers.UUIDField()
    breakers = BreakerSerializer(many=True)


class BreakerForceInputSerializer(StrictSerializer):
    state = serializers.ChoiceField(choices=list(FORCIBLE))
    reason = serializers.CharField(max_length=2000)


def _tenant(request):
    return tenant_for_user(request.user, request.query_params.get("tenant"))


def _overview(tenant_id) -> Response:
    return Response(BreakersSerializer({"tenant_id": tenant_id, "breakers": breakers_overview(tenant_id)}).data)


class BreakersView(GenericAPIView):
    serializer_class = BreakersSerializer

    @extend_schema(parameters=[TENANT_PARAMETER], responses={200: BreakersSerializer, **errors(400, 401, 404)})
    def get(self, request):
        return _overview(_tenant(request))


class BreakerForceView(GenericAPIView):
    serializer_class = BreakerForceInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(parameters=[TENANT_PARAMETER], request=BreakerForceInputSerializer,
                   responses={200: BreakersSerializer, **WRITE_ERRORS},
                   description="Force the connector's breaker OPEN (nothing is sent until a tenant admin closes it) "
                               "or CLOSED (the plans it held run on). TENANT_ADMIN; ledgered BREAKER_FORCED.")
    def post(self, request, connector):
        tenant_id = _tenant(request)
        data = validated(BreakerForceInputSerializer, request)
        breaker_force(tenant_id=tenant_id, connector=connector, user=request.user, **data)
        return _overview(tenant_id)
