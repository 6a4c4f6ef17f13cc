"""Autonomy control API: settings, budgets and their use, kill switches, the autopilot timeline,
"why did the system do this?", and the audit export.

Thin like the plans API: a serializer checks the form, a service or selector does the work.
Reads are for any member of the tenant; writes and the export for TENANT_ADMIN (DESIGN §3.6).
`?tenant=<id>` picks the tenant when the caller belongs to several.
"""
import json

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import renderers, serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from orchestrator.autonomy import selectors
from orchestrator.autonomy import services as autonomy
from orchestrator.autonomy.models import AutonomyDigest, AutonomyMode
from orchestrator.execution.models import ActionIntent
from plans import services
from plans.plan_types import ACTION_TYPES
from revplan.api.common import READ_ERRORS, WRITE_ERRORS, ApiPagination, errors, validated
from revplan.api.parsers import JSONParser
from revplan.api.serializers import LedgerEntrySerializer

TENANT_PARAMETER = OpenApiParameter("tenant", OpenApiTypes.UUID, description="The tenant, if you belong to several.")
BUDGET_MAX = autonomy.MAX_COUNT


# --- serializers ---------------------------------------------------------------------------------


class ActionTypeAutonomySerializer(serializers.Serializer):
    action_type = serializers.CharField()
    mode = serializers.ChoiceField(choices=AutonomyMode.choices)
    max_per_day = serializers.IntegerField()
    used_today = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    updated_by = serializers.CharField(allow_blank=True)


class AutonomySettingsSerializer(serializers.Serializer):
    tenant_id = serializers.UUIDField()
    opted_in = serializers.BooleanField()
    opted_in_at = serializers.DateTimeField(allow_null=True)
    opted_in_by = serializers.CharField(allow_null=True)
    max_per_account_per_day = serializers.IntegerField()
    max_proposals_per_day = serializers.IntegerField(help_text="DRAFTs the proposal triggers may create per day")
    proposals_today = serializers.IntegerField()
    proposal_cooldown_days = serializers.IntegerField()
    day = serializers.DateField(help_text="The (UTC) day the use counts are for.")
    used_by_account = serializers.DictField(child=serializers.IntegerField(),
                                            help_text="account id -> autonomous executions today")
    action_types = ActionTypeAutonomySerializer(many=True)


class TenantAutonomyInputSerializer(serializers.Serializer):
    opted_in = serializers.BooleanField(required=False)
    max_per_account_per_day = serializers.IntegerField(required=False, min_value=0, max_value=BUDGET_MAX)
    max_proposals_per_day = serializers.IntegerField(required=False, min_value=0, max_value=BUDGET_MAX)
    proposal_cooldown_days = serializers.IntegerField(required=False, min_value=0, max_value=BUDGET_MAX)


class ActionTypeAutonomyInputSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=AutonomyMode.choices, required=False)
    max_per_day = serializers.IntegerField(required=False, min_value=0, max_value=BUDGET_MAX)


class KillSwitchSerializer(serializers.Serializer):
    action_type = serializers.CharField(allow_blank=True, help_text="'' for the whole tenant")
    engaged = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField(allow_blank=True)


class KillSwitchesSerializer(serializers.Serializer):
    tenant_id = serializers.UUIDField()
    global_engaged = serializers.BooleanField(help_text="REVPLAN_EXECUTION_DISABLED: set by the operator, not here")
    switches = KillSwitchSerializer(many=True)


class KillSwitchInputSerializer(serializers.Serializer):
    action_type = serializers.ChoiceField(choices=["", *sorted(ACTION_TYPES)], required=False, default="")
    engaged = serializers.BooleanField()
    reason = serializers.CharField(max_length=2000)


class TimelineItemSerializer(serializers.Serializer):
    intent_id = serializers.UUIDField(source="id")
    action_type = serializers.CharField()
    account_id = serializers.UUIDField()
    account_name = serializers.CharField(source="account.name")
    plan_id = serializers.UUIDField()
    step_id = serializers.UUIDField()
    attempt = serializers.IntegerField()
    status = serializers.CharField()
    summary = serializers.SerializerMethodField()
    policy_version = serializers.CharField(source="approving_policy")
    external_ids = serializers.DictField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_summary(self, intent: ActionIntent) -> str:
        outcome = {"SUCCEEDED": "did", "FAILED": "tried and failed to do"}.get(intent.status, "is doing")
        return f"Autopilot {outcome} {intent.action_type} for {intent.account.name}."


class ActionWhySerializer(serializers.Serializer):
    intent_id = serializers.UUIDField()
    action_type = serializers.CharField()
    account = serializers.DictField()
    plan_id = serializers.UUIDField(allow_null=True)
    step_id = serializers.UUIDField(allow_null=True)
    attempt = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    allowed_by = serializers.CharField(help_text="Who or which policy allowed it, in a sentence.")
    approved_by = serializers.IntegerField(allow_null=True)
    approving_policy = serializers.CharField(allow_blank=True)
    decision = serializers.DictField(help_text="The autonomy decision: decision, reason, explanation, policy_version")
    knew = serializers.DictField(help_text="The facts the decision was made on, as they were then")
    outcome = serializers.DictField()
    try_history = serializers.ListField(child=serializers.DictField(), help_text="Each connector call it made")
    entries = LedgerEntrySerializer(many=True)


# --- views -----------------------------------------------------------------------------------------


def _tenant(request):
    return selectors.tenant_for_user(request.user, request.query_params.get("tenant"))


def _settings_response(tenant_id) -> Response:
    return Response(AutonomySettingsSerializer({"tenant_id": tenant_id, **autonomy.autonomy_settings(tenant_id)}).data)


class AutonomySettingsView(GenericAPIView):
    serializer_class = AutonomySettingsSerializer
    parser_classes = [JSONParser]

    @extend_schema(parameters=[TENANT_PARAMETER], responses={200: AutonomySettingsSerializer, **errors(400, 401, 404)})
    def get(self, request):
        return _settings_response(_tenant(request))

    @extend_schema(parameters=[TENANT_PARAMETER], request=TenantAutonomyInputSerializer,
                   responses={200: AutonomySettingsSerializer, **WRITE_ERRORS},
                   description="Opt the tenant in or out of autonomous execution; set the per-account daily budget.")
    def patch(self, request):
        tenant_id = _tenant(request)
        data = validated(TenantAutonomyInputSerializer, request)
        autonomy.tenant_autonomy_set(tenant_id=tenant_id, user=request.user, **data)
        return _settings_response(tenant_id)


class ActionTypeAutonomyView(GenericAPIView):
    serializer_class = ActionTypeAutonomyInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(parameters=[TENANT_PARAMETER], request=ActionTypeAutonomyInputSerializer,
                   responses={200: AutonomySettingsSerializer, **WRITE_ERRORS},
                   description="Set an action type's autonomy mode and/or its daily budget for the tenant.")
    def patch(self, request, action_type):
        tenant_id = _tenant(request)
        data = validated(ActionTypeAutonomyInputSerializer, request)
        autonomy.action_type_autonomy_set(tenant_id=tenant_id, user=request.user, action_type=action_type, **data)
        return _settings_response(tenant_id)


class KillSwitchesView(GenericAPIView):
    serializer_class = KillSwitchesSerializer
    parser_classes = [JSONParser]

    @extend_schema(parameters=[TENANT_PARAMETER], responses={200: KillSwitchesSerializer, **errors(400, 401, 404)})
    def get(self, request):
        tenant_id = _tenant(request)
        return Response(KillSwitchesSerializer({"tenant_id": tenant_id, **selectors.kill_switches(tenant_id)}).data)

    @extend_schema(parameters=[TENANT_PARAMETER], request=KillSwitchInputSerializer,
                   responses={200: KillSwitchesSerializer, **WRITE_ERRORS},
                   description="Engage or release the tenant's switch (action_type '') or one action type's.")
    def post(self, request):
        tenant_id = _tenant(request)
        data = validated(KillSwitchInputSerializer, request)
        services.kill_switch_set(tenant_id=tenant_id, user=request.user, **data)
        return Response(KillSwitchesSerializer({"tenant_id": tenant_id, **selectors.kill_switches(tenant_id)}).data)


class AutopilotTimelineView(GenericAPIView):
    """"Autopilot did X": the plan steps the system carried out on its own, newest first."""

    serializer_class = TimelineItemSerializer
    pagination_class = ApiPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ActionIntent.objects.none()
        return selectors.autopilot_timeline(_tenant(self.request))

    @extend_schema(parameters=[TENANT_PARAMETER], responses={200: TimelineItemSerializer(many=True),
                                                             **errors(400, 401, 404)})
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(TimelineItemSerializer(page, many=True).data)


class ActionWhyView(GenericAPIView):
    """Why did the system do this? What it knew, which policy or person allowed it, and what happened."""

    serializer_class = ActionWhySerializer

    @extend_schema(responses={200: ActionWhySerializer, **READ_ERRORS})
    def get(self, request, intent_id):
        intent = selectors.action_for_user(request.user, intent_id)
        return Response(ActionWhySerializer(selectors.action_why(intent)).data)


class LedgerExportQuerySerializer(serializers.Serializer):
    start = serializers.DateTimeField(required=False, help_text="inclusive (the `from` query parameter)")
    to = serializers.DateTimeField(required=False, help_text="exclusive")
    # Not `format`: DRF reserves that query parameter for choosing a renderer.
    as_ = serializers.ChoiceField(choices=["jsonl", "csv"], required=False, default="jsonl", source="as")


class _ExportRenderer(renderers.BaseRenderer):
    """Lets a client ask for the export's own media type (Accept); errors still go out as JSON text."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode()


class JsonLinesRenderer(_ExportRenderer):
    media_type, format = "application/jsonl", "jsonl"


class CsvRenderer(_ExportRenderer):
    media_type, format = "text/csv", "csv"


class LedgerExportView(GenericAPIView):
    """The tenant's whole ledger (or a time range of it), streamed; TENANT_ADMIN only."""

    serializer_class = LedgerExportQuerySerializer
    renderer_classes = [renderers.JSONRenderer, JsonLinesRenderer, CsvRenderer]

    @extend_schema(
        parameters=[TENANT_PARAMETER,
                    OpenApiParameter("from", OpenApiTypes.DATETIME, description="inclusive"),
                    OpenApiParameter("to", OpenApiTypes.DATETIME, description="exclusive"),
                    OpenApiParameter("as", str, enum=["jsonl", "csv"], description="default jsonl")],
        responses={(200, "application/jsonl"): OpenApiTypes.STR, (200, "text/csv"): OpenApiTypes.STR,
                   **errors(400, 401, 403, 404)},
    )
    def get(self, request):
        tenant_id = _tenant(request)
        services.require_admin(user=request.user, tenant_id=tenant_id)
        params = {"start": request.query_params.get("from"), "to": request.query_params.get("to"),
                  "as_": request.query_params.get("as")}
        query = LedgerExportQuerySerializer(data={key: value for key, value in params.items() if value})
        query.is_valid(raise_exception=True)
        fmt = query.validated_data["as"]
        response = StreamingHttpResponse(
            selectors.ledger_export(tenant_id, start=query.validated_data.get("start"),
                                    end=query.validated_data.get("to"), fmt=fmt),
            content_type="text/csv" if fmt == "csv" else "application/jsonl",
        )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="ledger-{tenant_id}-{stamp}.{fmt}"'
        return response


class DigestSerializer(serializers.Serializer):
    day = serializers.DateField()
    summary = serializers.DictField()
    text = serializers.CharField()
    emailed_to = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()


class DigestListView(GenericAPIView):
    """The tenant's daily autopilot digests, newest first."""

    serializer_class = DigestSerializer
    pagination_class = ApiPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AutonomyDigest.objects.none()
        return AutonomyDigest.objects.filter(tenant_id=_tenant(self.request)).order_by("-day")

    @extend_schema(parameters=[TENANT_PARAMETER], responses={200: DigestSerializer(many=True), **errors(400, 401, 404)})
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(DigestSerializer(page, many=True).data)
