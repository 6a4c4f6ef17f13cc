"""Incidents API: GET /api/v1/incidents/ (the plans a failing connector left PAUSED, grouped by tenant,
connector, action type and failure class) and POST /api/v1/incidents/retry/ (a tenant admin's bulk redrive
of one group). Thin: orchestrator.incidents groups and redrives."""
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from orchestrator.execution.models import ConnectorName, FailureClass
from orchestrator.incidents import BREAKER_OPEN, LISTED_PLANS, UNKNOWN, IncidentKey, incident_groups, incident_redrive
from plans.models import PauseKind, PauseLayer, PlanStatus
from plans.plan_types import ACTION_TYPES
from revplan.api.common import ApiPagination, StrictSerializer, errors, validated
from revplan.api.parsers import JSONParser
from revplan.api.throttles import UserThrottle

PLAN_LIST_NOTE = f"The longest paused first; at most {LISTED_PLANS} are listed (`count` is the whole group)."


class IncidentPlanSerializer(serializers.Serializer):
    plan_id = serializers.UUIDField()
    account_name = serializers.CharField()
    step_id = serializers.UUIDField(allow_null=True, help_text="The failed step (RETRY_LIMIT), or the step "
                                                               "that waits for the connector (BREAKER).")
    pause_kind = serializers.ChoiceField(choices=[PauseKind.RETRY_LIMIT, PauseKind.BREAKER])
    paused_at = serializers.DateTimeField(help_text="When the layer was set.")
    last_error = serializers.CharField(help_text="The step's last error, as the engine recorded it.")


class IncidentGroupSerializer(serializers.Serializer):
    tenant = serializers.CharField(source="tenant_slug", help_text="The tenant's slug.")
    connector = serializers.CharField(source="key.connector")
    action_type = serializers.CharField(source="key.action_type")
    failure_class = serializers.CharField(source="key.failure_class", help_text=(
        "The failed attempt's class (TRANSIENT, PERMANENT, WORKER_LOST, EXPIRED, ...), BREAKER_OPEN for a plan "
        "the connector's circuit breaker holds."))
    count = serializers.IntegerField()
    pause_kinds = serializers.ListField(child=serializers.CharField())
    plans = serializers.SerializerMethodField(help_text=PLAN_LIST_NOTE)

    @extend_schema_field(IncidentPlanSerializer(many=True))
    def get_plans(self, group) -> list[dict]:
        return IncidentPlanSerializer(group.plans[:LISTED_PLANS], many=True).data


# An incident's key as values (the schema names each set once: SPECTACULAR_SETTINGS' ENUM_NAME_OVERRIDES).
INCIDENT_CONNECTORS = [*ConnectorName.values, UNKNOWN]
INCIDENT_ACTION_TYPES = [*sorted(ACTION_TYPES), UNKNOWN]
INCIDENT_FAILURE_CLASSES = [*FailureClass.values, BREAKER_OPEN, UNKNOWN]
REDRIVE_OUTCOMES = ["RETRIED", "REFUSED"]


class IncidentRetryInputSerializer(StrictSerializer):
    """The group's key as GET /incidents/ shows it: a value no group can have is a 400, not a 404."""

    connector = serializers.ChoiceField(choices=INCIDENT_CONNECTORS)
    action_type = serializers.ChoiceField(choices=INCIDENT_ACTION_TYPES)
    failure_class = serializers.ChoiceField(choices=INCIDENT_FAILURE_CLASSES)
    tenant = serializers.SlugField(required=False, help_text="The tenant's slug; needed only when the same "
                                                             "incident is in several of your tenants.")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                   help_text="Why, for each plan's STEP_RETRIED and INCIDENT_REDRIVEN entries.")


class RedriveResultSerializer(serializers.Serializer):
    plan_id = serializers.UUIDField()
    step_id = serializers.UUIDField(allow_null=True)
    outcome = serializers.ChoiceField(choices=REDRIVE_OUTCOMES)
    code = serializers.CharField(help_text="STEP_RETRIED, or why not (HELD_BY_BREAKER, STEP_NOT_FAILED, ...).")
    detail = serializers.CharField()
    plan_status = serializers.ChoiceField(choices=PlanStatus.choices)


class RedriveReportSerializer(serializers.Serializer):
    batch_id = serializers.CharField(help_text="Names this redrive in each plan's INCIDENT_REDRIVEN entry.")
    tenant = serializers.CharField(source="tenant_slug")
    connector = serializers.CharField(source="key.connector")
    action_type = serializers.CharField(source="key.action_type")
    failure_class = serializers.CharField(source="key.failure_class")
    count = serializers.IntegerField(help_text="The group's plans when the redrive began.")
    retried = serializers.SerializerMethodField()
    refused = serializers.SerializerMethodField()
    remaining = serializers.IntegerField(help_text="Plans past this call's limit (REVPLAN_REDRIVE_MAX_PLANS): "
                                                   "call again for them.")
    results = RedriveResultSerializer(many=True)

    def get_retried(self, report) -> int:
        return report.counted("RETRIED")

    def get_refused(self, report) -> int:
        return report.counted("REFUSED")


class RedriveThrottle(UserThrottle):
    """Redrives per user (REVPLAN_THROTTLE_REDRIVE), on top of the user's overall rate."""

    scope = "incident_redrive"


class IncidentListView(GenericAPIView):
    """The plans paused by RETRY_LIMIT or BREAKER in your tenants, grouped by (tenant, connector, action type,
    failure class), the largest group first."""

    serializer_class = IncidentGroupSerializer
    pagination_class = ApiPagination
    queryset = PauseLayer.objects.none()  # read by the schema generator only; the groups come from incidents

    @extend_schema(responses={200: IncidentGroupSerializer(many=True), **errors(400, 401, 404)})
    def get(self, request):
        page = self.paginate_queryset(incident_groups(request.user))
        return self.get_paginated_response(IncidentGroupSerializer(page, many=True).data)


class IncidentRetryView(GenericAPIView):
    serializer_class = IncidentRetryInputSerializer
    parser_classes = [JSONParser]
    throttle_classes = [UserThrottle, RedriveThrottle]

    @extend_schema(
        request=IncidentRetryInputSerializer,
        responses={200: RedriveReportSerializer, **errors(400, 401, 403, 404, 413, 429)},
        description="Retry the failed step of every plan in one incident group (a TENANT_ADMIN), through the step "
        "retry verb, each plan in its own transaction: a result per plan, each retried plan ledgered (STEP_RETRIED, "
        "INCIDENT_REDRIVEN). At most REVPLAN_REDRIVE_MAX_PLANS plans a call, the longest paused first (`remaining` "
        "says how many are left). A plan only a BREAKER layer holds is not retried (HELD_BY_BREAKER): the breaker "
        "closing lifts it. An unknown group, or another tenant's, is 404.",
    )
    def post(self, request):
        data = validated(IncidentRetryInputSerializer, request)
        key = IncidentKey(connector=data["connector"], action_type=data["action_type"],
                          failure_class=data["failure_class"])
        report = incident_redrive(user=request.user, key=key, tenant_slug=data.get("tenant"),
                                  reason=data.get("reason", ""))
        return Response(RedriveReportSerializer(report).data)
