"""Autonomy by evidence: shadow agreement per action type, the promotions the daily review proposes, and
policy backtests.

Thin: orchestrator.autonomy.shadow counts, orchestrator.autonomy.review proposes, confirms and dismisses,
orchestrator.autonomy.backtest replays. Any member reads the agreement and the proposals; confirming or
dismissing a proposal (ledgered with its evidence) and running a backtest are for a TENANT_ADMIN.
"""
from datetime import timedelta

import pydantic
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from orchestrator.autonomy import backtest, review, shadow
from orchestrator.autonomy.models import AutonomyMode, AutonomyProposal, PersonDecision, ProposalStatus
from orchestrator.autonomy.selectors import tenant_for_user
from orchestrator.autonomy.services import autonomy_settings
from plans.services import require_admin
from revplan.api.autonomy import TENANT_PARAMETER
from revplan.api.common import WRITE_ERRORS, ApiPagination, StrictSerializer, errors
from revplan.api.parsers import JSONParser

MAX_WINDOW_DAYS = 365
DECISIONS = [decision.value or "UNDECIDED" for decision in PersonDecision]


class ShadowSideSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    decided = serializers.IntegerField(help_text="a person approved (as is or after an edit), skipped or aborted")
    by_person_decision = serializers.DictField(child=serializers.IntegerField(), help_text=(
        f"One count for each of {', '.join(DECISIONS)} (NONE: the plan ended with nobody deciding)."))


class ShadowActionTypeSerializer(serializers.Serializer):
    action_type = serializers.CharField()
    mode = serializers.ChoiceField(choices=AutonomyMode.choices, help_text="the action type's mode now")
    would_run = ShadowSideSerializer(help_text="steps the policy would have run on its own")
    would_ask = ShadowSideSerializer(help_text="steps it would have left to a person anyway (external contact, "
                                               "HIGH risk): promotion changes nothing for them")
    agreed = serializers.IntegerField(help_text="of would_run, approved by a person as the policy saw them")
    agreement = serializers.FloatField(allow_null=True, help_text="agreed / would_run.decided; null before any")


class ShadowReportSerializer(serializers.Serializer):
    tenant_id = serializers.UUIDField()
    since = serializers.DateTimeField()
    action_types = ShadowActionTypeSerializer(many=True)


class ShadowQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False, default=30, min_value=1, max_value=MAX_WINDOW_DAYS)


class ProposalSerializer(serializers.Serializer):
    proposal_id = serializers.UUIDField(source="id")
    action_type = serializers.CharField()
    from_mode = serializers.ChoiceField(choices=AutonomyMode.choices)
    to_mode = serializers.ChoiceField(choices=AutonomyMode.choices)
    status = serializers.ChoiceField(choices=ProposalStatus.choices)
    evidence = serializers.DictField(help_text="decisions, agreed, agreement, by_person_decision, window_days, "
                                               "min_decisions, min_agreement, measured_at")
    proposed_at = serializers.DateTimeField()
    decided_by = serializers.CharField(allow_blank=True)
    decided_at = serializers.DateTimeField(allow_null=True)


class ShadowReportView(GenericAPIView):
    """How often people agreed with the policy in shadow mode, per action type, over the last `days`."""

    serializer_class = ShadowReportSerializer

    @extend_schema(parameters=[TENANT_PARAMETER, OpenApiParameter("days", OpenApiTypes.INT, description=(
        f"The window, 1 to {MAX_WINDOW_DAYS} days (default 30)."))],
        responses={200: ShadowReportSerializer, **errors(400, 401, 404)})
    def get(self, request):
        tenant_id = tenant_for_user(request.user, request.query_params.get("tenant"))
        query = ShadowQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        now = timezone.now()
        since = now - timedelta(days=query.validated_data["days"])
        modes = {row["action_type"]: row["mode"] for row in autonomy_settings(tenant_id)["action_types"]}
        counts = shadow.agreement(tenant_id, since=since)
        return Response(ShadowReportSerializer({"tenant_id": tenant_id, "since": since, "action_types": [
            {"action_type": action_type, "mode": modes.get(action_type, ""), **summary}
            for action_type, summary in counts.items()]}).data)


class ProposalListView(GenericAPIView):
    """The promotions the daily review proposed in the caller's tenants, newest first."""

    serializer_class = ProposalSerializer
    pagination_class = ApiPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AutonomyProposal.objects.none()
        return review.proposals_for_user(self.request.user)

    @extend_schema(responses={200: ProposalSerializer(many=True), **errors(400, 401, 404)})
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ProposalSerializer(page, many=True).data)


class _ProposalDecisionView(GenericAPIView):
    serializer_class = ProposalSerializer
    confirm: bool

    def post(self, request, proposal_id):
        proposal = review.proposal_decide(proposal_id=proposal_id, user=request.user, confirm=self.confirm)
        return Response(ProposalSerializer(proposal).data)


@extend_schema(request=None, responses={200: ProposalSerializer, **WRITE_ERRORS}, description=(
    "Apply the proposal: the action type's mode goes SHADOW -> AUTO_EXECUTE, ledgered with the evidence. "
    "TENANT_ADMIN. The evidence is weighed again with what people decided since: 409 PROPOSAL_NO_LONGER_EARNED "
    "when it no longer passes, 409 PROPOSAL_SUPERSEDED when the mode changed since it was proposed."))
class ProposalConfirmView(_ProposalDecisionView):
    confirm = True


@extend_schema(request=None, responses={200: ProposalSerializer, **WRITE_ERRORS},
               description="Dismiss the proposal; the mode stays. TENANT_ADMIN; ledgered.")
class ProposalDismissView(_ProposalDecisionView):
    confirm = False


# A request's replay runs while the caller waits (~2,900 decisions/s): longer windows are for the command.
MAX_BACKTEST_DAYS = 92


class BacktestInputSerializer(StrictSerializer):
    start = serializers.DateTimeField(help_text="inclusive (the `from` field)")
    to = serializers.DateTimeField(help_text=f"exclusive; at most {MAX_BACKTEST_DAYS} days after `from`")
    settings = serializers.DictField(help_text=(
        "The candidate: {\"opted_in\": bool, \"max_per_account_per_day\": int, \"action_types\": {TYPE: {\"mode\": "
        "MODE, \"max_per_day\": int}}, \"policy_version\": \"auto-approval-v1\"}; each optional. Unset modes and "
        "opt-in stay as recorded, unset budgets as the tenant has them. Longer windows: manage.py backtest_policy."))

    # `from` is a Python keyword: the field is `start` inside, `from` on the wire (and in errors).
    def to_internal_value(self, data):
        if isinstance(data, dict):
            if "start" in data:
                raise ValidationError({"start": ["Unknown field."]})
            data = {("start" if key == "from" else key): value for key, value in data.items()}
        try:
            return super().to_internal_value(data)
        except ValidationError as error:
            if isinstance(error.detail, dict) and "start" in error.detail:
                error.detail["from"] = error.detail.pop("start")
            raise

    def validate(self, attrs):
        if attrs["to"] <= attrs["start"] or attrs["to"] - attrs["start"] > timedelta(days=MAX_BACKTEST_DAYS):
            raise ValidationError({"to": [f"After `from`, and at most {MAX_BACKTEST_DAYS} days after it."]})
        try:
            attrs["candidate"] = backtest.CandidateSettings.model_validate(attrs["settings"])
        except pydantic.ValidationError as error:
            raise ValidationError({"settings." + ".".join(str(part) for part in item["loc"]): [item["msg"]]
                                   for item in error.errors()}) from None
        return attrs


class BacktestView(GenericAPIView):
    """Replay the tenant's recorded step decisions in a window under candidate settings: what would change."""

    serializer_class = BacktestInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(parameters=[TENANT_PARAMETER], request=BacktestInputSerializer,
                   responses={200: OpenApiTypes.OBJECT, **errors(400, 401, 403, 404, 413)}, description=(
                       "Read-only. The report: decisions; counts by decision and by reason before and after; flips "
                       "(count, by_change, the first 100); budget_exhausted (count, the first 100: day, budget, "
                       "action_type, account_id, first_refused_at, refused). TENANT_ADMIN."))
    def post(self, request):
        tenant_id = tenant_for_user(request.user, request.query_params.get("tenant"))
        require_admin(user=request.user, tenant_id=tenant_id)
        data = BacktestInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        query = data.validated_data
        return Response(backtest.backtest(tenant_id, start=query["start"], end=query["to"],
                                          candidate=query["candidate"]))
