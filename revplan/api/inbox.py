"""The approver's inbox API: GET /api/v1/inbox/, everything waiting for the caller (plans.inbox), by due time.

Thin: the query parameters are checked here, plans.inbox finds what waits and fills in one page of it.
"""
from uuid import UUID

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView

from plans import selectors
from plans.errors import NotFound
from plans.inbox import InboxKind, inbox_entries, inbox_items
from plans.models import PlanStatus, RevenuePlan, RiskLevel, StepStatus
from revplan.api.common import ApiPagination, errors
from revplan.api.output import compiled_many
from revplan.api.serializers import StepPreviewSerializer

VERBS = ("approve", "reapprove", "resume", "approve_step", "skip_step", "retry_step", "transfer_account", "abort")


class InboxPlanSerializer(serializers.Serializer):
    plan_id = serializers.UUIDField(source="id")
    tenant_id = serializers.UUIDField()
    account_id = serializers.UUIDField()
    account_name = serializers.CharField(source="account.name")
    plan_type = serializers.CharField()
    plan_status = serializers.ChoiceField(choices=PlanStatus.choices)
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices)
    owner_id = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField(help_text="Send it back with the verb to refuse it (409) if the plan changed.")


class InboxStepSerializer(serializers.Serializer):
    step_id = serializers.UUIDField()
    sequence = serializers.IntegerField()
    action_type = serializers.CharField()
    status = serializers.ChoiceField(choices=StepStatus.choices)
    required = serializers.BooleanField()


class InboxPreviewSerializer(serializers.Serializer):
    step_id = serializers.UUIDField()
    sequence = serializers.IntegerField()
    action_type = serializers.CharField()
    preview = StepPreviewSerializer(allow_null=True, help_text=(
        "What the step will send, described by its connector without sending (a plan's steps[].preview); null "
        "when nothing describes it."))


class InboxItemSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[(kind.value, kind.value) for kind in InboxKind], help_text=(
        "DRAFT_APPROVAL: a DRAFT you may approve. STEP_APPROVAL: a step of an ACTIVE plan waiting for a person's "
        "approval. APPROVAL_STALE: a PAUSED plan whose approval's facts drifted, for you to reapprove. PAUSED: a "
        "PAUSED plan held by layers you may lift (resume; retry or skip its failed step; transfer the account)."))
    plan = InboxPlanSerializer()
    step = InboxStepSerializer(allow_null=True, help_text="The step the wait is about; null for a plan's.")
    waiting_since = serializers.DateTimeField(help_text=(
        "When the wait began: a DRAFT's last change, the step's STEP_AWAITING_APPROVAL entry, the pause layer's "
        "set_at."))
    age_seconds = serializers.IntegerField()
    due_at = serializers.DateTimeField(help_text="waiting_since + the plan type's approval SLA for this kind.")
    due_in_seconds = serializers.IntegerField(help_text="Negative once overdue.")
    overdue = serializers.BooleanField()
    waiting_for = serializers.CharField(help_text="What it waits for and who can act, as a sentence.")
    verbs = serializers.ListField(child=serializers.ChoiceField(choices=VERBS), help_text=(
        "What you may do now, those that end the wait first: the plan's (approve, reapprove, resume, abort: "
        "POST /plans/{plan_id}/<verb>/), the step's (approve_step, skip_step, retry_step: POST "
        "/plans/{plan_id}/steps/{step_id}/approve|skip|retry/), transfer_account (the account's new owner)."))
    previews = InboxPreviewSerializer(many=True, help_text=(
        "What acting lets happen: a plan's unfinished steps for an approval or reapproval, the step's for a "
        "step's."))


# InboxItemSerializer's output, compiled once (revplan.api.output): the same JSON at a fraction of DRF's cost.
inbox_output = compiled_many(InboxItemSerializer)


class InboxQuerySerializer(serializers.Serializer):
    kind = serializers.MultipleChoiceField(choices=[(kind.value, kind.value) for kind in InboxKind], required=False)
    tenant = serializers.UUIDField(required=False)


class InboxView(GenericAPIView):
    """Everything waiting for you in your tenants, soonest due first (the overdue first)."""

    pagination_class = ApiPagination
    serializer_class = InboxItemSerializer
    # Read by the schema generator only; the items come from plans.inbox, not from a queryset.
    queryset = RevenuePlan.objects.none()

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, many=True, enum=[kind.value for kind in InboxKind],
                             description="Only these kinds (repeat the parameter for several)."),
            OpenApiParameter("tenant", OpenApiTypes.UUID, description="Only this tenant of yours."),
        ],
        responses={200: InboxItemSerializer(many=True), **errors(400, 401, 404)},
        description="DRAFTs you may approve (never one you created or edited since its last approval; a HIGH-risk "
        "one only for a tenant admin), steps waiting for a person's approval, stale approvals to reapprove, and "
        "PAUSED plans whose layers you may lift, each with when the wait began, when it is due (the plan type's "
        "approval SLA), what it waits for, the verbs you may use and what they let happen. A VIEWER's is empty. "
        "An item leaves when its wait ends (approved, lifted) or its plan ends.",
    )
    def get(self, request):
        query = InboxQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        tenant_id = _own_tenant(request.user, query.validated_data.get("tenant"))
        kinds = frozenset(InboxKind(kind) for kind in query.validated_data.get("kind", ())) or None
        # The page asked for is read with the count: one pass over what waits, not two.
        waits = inbox_entries(request.user, kinds=kinds, tenant_id=tenant_id,
                              window=self.paginator.requested_window(request))
        entries = self.paginate_queryset(waits)
        items = inbox_items(request.user, now=timezone.now(), entries=list(entries))
        page = inbox_output(items)
        selectors.release_page([item.plan for item in items])
        return self.get_paginated_response(page)


def _own_tenant(user, tenant_id: UUID | None) -> UUID | None:
    """The `?tenant=` asked for, if the caller is a member; another tenant does not exist for them (404)."""
    if tenant_id is not None and not selectors.active_memberships(user).filter(tenant_id=tenant_id).exists():
        raise NotFound("NOT_FOUND", "The tenant does not exist.")
    return tenant_id
