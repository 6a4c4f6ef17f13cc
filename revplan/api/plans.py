"""Plans API: list, read, propose, create, edit, the people's verbs, ledger and "why?".

Thin: a serializer checks the request's form, one service or selector does the work, and the
result goes out in the RevenuePlanV1 shape. Authority, lifecycle, the gate, locks and the ledger
are the services' business; their typed errors become §7 JSON in revplan.api.errors.
"""
import django_filters
import pydantic
from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from orchestrator.blocked_by import blocked_by_for
from orchestrator.execution.compensation import plan_abort_compensating
from orchestrator.execution.selectors import latest_step_executions
from plans import previews, proposals, selectors, services, why
from plans.models import EventType, PauseLayer, PlanLedgerEntry, PlanStatus, RevenuePlan
from plans.plan_types import PLAN_TYPES
from plans.schemas import PlanDraftInput, StepInput, plan_values
from plans.services import approvals
from plans.services.layers import LIFTED_BY, LIFTED_BY_VERB
from revplan.api.actions import PlanAbortReportSerializer
from revplan.api.common import READ_ERRORS, WRITE_ERRORS, ApiPagination, UserIdFilter, errors, validated
from revplan.api.output import compiled_many
from revplan.api.parsers import JSONParser
from revplan.api.serializers import (
    LedgerEntrySerializer,
    OptionalReasonInputSerializer,
    PlanCreateSerializer,
    PlanEditSerializer,
    PlanProposeSerializer,
    PlanWhySerializer,
    RequiredReasonInputSerializer,
    RevenuePlanV1Serializer,
    VersionInputSerializer,
)


def plan_payloads(plans) -> list[dict]:
    """RevenuePlanV1 dicts for `plans` (steps prefetched), each step with its current execution and
    the plan with what keeps it from moving (blocked_by), in the same queries for 1 plan or a page."""
    # What RevenuePlanV1Serializer(..., many=True).data would be, compiled (revplan.api.output): DRF's own
    # generic pass was ~9 ms of a page's ~36 ms of CPU, this one ~3.
    plans = list(plans)
    payloads = compiled_many(RevenuePlanV1Serializer)(plan_sources(plans))
    selectors.release_page(plans)
    return payloads


def plan_sources(plans) -> list[dict]:
    """What RevenuePlanV1Serializer renders for `plans`: their values before the output pass."""
    plans = list(plans)
    executions = latest_step_executions(plans)
    blocked_by = blocked_by_for(plans, now=timezone.now(), executions=executions)
    # What each step yet to run will send: one describer call for the whole page.
    step_previews = previews.previews_for(step for plan in plans for step in plan.steps.all())
    payloads = []
    for plan in plans:
        steps = list(plan.steps.all())
        wire = plan_values(plan, steps)
        # What each approval covered and what changed since, from rows already read (no query).
        wire["approval"] = approvals.plan_approval(plan, steps)
        step_approvals = {step.step_id: approvals.step_approval(step) for step in steps}
        for step in wire["steps"]:
            step["latest_execution"] = executions.get((plan.id, step["step_id"]))
            step["approval"] = step_approvals[step["step_id"]]
            step["preview"] = step_previews.get(step["step_id"])
        wire["blocked_by"] = blocked_by[plan.id]
        wire["pause_layers"] = [pause_layer_payload(layer) for layer in open_layers_of(plan)]
        payloads.append(wire)
    return payloads


def open_layers_of(plan: RevenuePlan) -> list[PauseLayer]:
    """The plan's open layers: prefetched by selectors.plans_for_user, else read."""
    prefetched = getattr(plan, selectors.OPEN_LAYERS, None)
    return list(prefetched) if prefetched is not None else services.open_layers(plan)


def pause_layer_payload(layer: PauseLayer) -> dict:
    return {"kind": layer.kind, "scope": layer.scope, "reason_code": layer.reason_code,
            "explanation": layer.explanation, "set_by": layer.set_by, "set_at": layer.set_at,
            "lifted_by": LIFTED_BY[layer.kind], "lifted_by_verb": LIFTED_BY_VERB[layer.kind]}


def plan_response(user, plan_id, *, status_code: int = status.HTTP_200_OK) -> Response:
    """Re-read after a write: the service's instance does not carry fresh steps or executions."""
    return Response(plan_payloads([selectors.plan_for_user(user, plan_id)])[0], status=status_code)


def draft_input(data: dict, *, steps: list[StepInput] | None = None) -> PlanDraftInput:
    """The validated request as the services' bounded input; a pydantic refusal is still a 400."""
    fields = {key: data[key] for key in ("objective", "constraints") if key in data}
    try:
        return PlanDraftInput.model_validate({**fields, "steps": steps if steps is not None else data["steps"]})
    except pydantic.ValidationError as error:
        raise ValidationError(
            {".".join(str(part) for part in item["loc"]): [item["msg"]] for item in error.errors()}
        ) from None


class PlanOrdering(django_filters.OrderingFilter):
    # The keys after each sort key, in its direction: pages neither repeat nor skip plans with equal keys,
    # and each ordering walks one index of RevenuePlan.Meta.indexes (tenant, key, these) in order.
    tie_breakers = {"plan_status": ("created_at", "id"), "risk_level": ("created_at", "id")}

    def filter(self, qs, value):
        ordered = super().filter(qs, value)
        if not value:
            return ordered
        keys = [str(key) for key in ordered.query.order_by]
        first = keys[0].lstrip("-")
        sign = "-" if keys[0].startswith("-") else ""
        named = {key.lstrip("-") for key in keys}
        extra = [f"{sign}{name}" for name in self.tie_breakers.get(first, ("id",)) if name not in named]
        return ordered.order_by(*keys, *extra)


class PlanFilter(django_filters.FilterSet):
    # distinct=False: no join here can repeat a plan, and SELECT DISTINCT would read every matching plan.
    status = django_filters.MultipleChoiceFilter(field_name="plan_status", choices=PlanStatus.choices, distinct=False)
    plan_type = django_filters.ChoiceFilter(choices=[(plan_type, plan_type) for plan_type in sorted(PLAN_TYPES)])
    account = django_filters.UUIDFilter(field_name="account_id")
    owner = UserIdFilter(field_name="owner_id", help_text="User id of the plan's owner.")
    ordering = PlanOrdering(
        fields=("created_at", "updated_at", "expires_at", "next_run_at", "plan_status", "risk_level"),
        help_text="Sort key; prefix with - for descending. Default: -created_at. Plans with equal keys come in "
        "creation order (the same direction).",
    )

    class Meta:
        model = RevenuePlan
        fields = []  # the declared filters only


class PlanListCreateView(GenericAPIView):
    """GET: the caller's tenants' plans (filter, order, page). POST: a DRAFT with the given steps."""

    # Each view's serializer_class is its request body: what OPTIONS describes (responses are in extend_schema).
    serializer_class = PlanCreateSerializer
    filterset_class = PlanFilter
    pagination_class = ApiPagination
    parser_classes = [JSONParser]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return RevenuePlan.objects.none()
        return selectors.plan_list_for_user(self.request.user)

    @extend_schema(responses={200: RevenuePlanV1Serializer(many=True), **errors(400, 401, 404)})
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(plan_payloads(page))

    @extend_schema(
        request=PlanCreateSerializer,
        responses={201: RevenuePlanV1Serializer, **WRITE_ERRORS, **errors(422)},
        description="Create a DRAFT plan for an account from the given steps. A step order or action type "
        "the plan type does not allow is a 422 with STEP_ORDER_VIOLATION.",
    )
    def post(self, request):
        data = validated(PlanCreateSerializer, request)
        plan = services.plan_propose(
            account_id=data["account_id"], plan_type=data["plan_type"], draft=draft_input(data),
            actor=request.user, trigger="api",
        )
        return plan_response(request.user, plan.id, status_code=status.HTTP_201_CREATED)


class PlanProposeView(GenericAPIView):
    """Let the configured proposal generator draft a plan for an account, and save it as a DRAFT."""

    serializer_class = PlanProposeSerializer
    parser_classes = [JSONParser]

    @extend_schema(request=PlanProposeSerializer, responses={201: RevenuePlanV1Serializer, **WRITE_ERRORS,
                                                              **errors(422)})
    def post(self, request):
        data = validated(PlanProposeSerializer, request)
        # The service checks visibility and the caller's role before the proposer (maybe an LLM) runs.
        plan = proposals.propose_for_account(account_id=data["account_id"], plan_type=data["plan_type"],
                                             actor=request.user, trigger="api_propose")
        return plan_response(request.user, plan.id, status_code=status.HTTP_201_CREATED)


class PlanDetailView(GenericAPIView):
    """GET: one plan in full. PATCH: edit a DRAFT (objective, constraints, steps)."""

    serializer_class = PlanEditSerializer
    parser_classes = [JSONParser]

    @extend_schema(responses={200: RevenuePlanV1Serializer, **READ_ERRORS})
    def get(self, request, plan_id):
        return plan_response(request.user, plan_id)

    @extend_schema(
        request=PlanEditSerializer,
        responses={200: RevenuePlanV1Serializer, **WRITE_ERRORS, **errors(422)},
        description="Only a DRAFT can be edited (409 INVALID_TRANSITION otherwise). Send `version` to refuse the "
        "edit with 409 VERSION_CONFLICT when the plan changed since you read it. Omitted steps stay as they are.",
    )
    def patch(self, request, plan_id):
        data = validated(PlanEditSerializer, request)
        expected_version = data.get("version")
        steps = None
        if "steps" not in data:
            # Keep the current steps, pinned to the version they were read at: a concurrent
            # step edit becomes a 409 instead of being silently overwritten.
            current = selectors.plan_for_user(request.user, plan_id)
            steps = [
                StepInput(step_id=step.step_id, action_type=step.action_type, depends_on=step.depends_on,
                          parameters=step.parameters)
                for step in current.steps.all()
            ]
            expected_version = expected_version or current.version
        services.plan_edit(plan_id=plan_id, user=request.user, draft=draft_input(data, steps=steps),
                           expected_version=expected_version)
        return plan_response(request.user, plan_id)


# --- the people's verbs -----------------------------------------------------------------------


class PlanApproveView(GenericAPIView):
    serializer_class = VersionInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(
        request=VersionInputSerializer, responses={200: RevenuePlanV1Serializer, **WRITE_ERRORS, **errors(422)},
        description="DRAFT → APPROVED. The policy gate may refuse (422, reasons; the refusal is in the ledger); "
        "while another plan of the type is APPROVED or ACTIVE for the account it is 409 CONFLICT_ACTIVE_PLAN_EXISTS, "
        "naming that plan. The plan's creator and anyone who edited it since its last approval may not approve it "
        "(403 CREATOR_CANNOT_APPROVE, EDITED_SINCE_APPROVAL).",
    )
    def post(self, request, plan_id):
        data = validated(VersionInputSerializer, request)
        services.plan_approve(plan_id=plan_id, user=request.user, expected_version=data.get("version"))
        return plan_response(request.user, plan_id)


class PlanReapproveView(GenericAPIView):
    serializer_class = VersionInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(
        request=VersionInputSerializer, responses={200: RevenuePlanV1Serializer, **WRITE_ERRORS, **errors(422)},
        description="Approve a PAUSED plan afresh on its current content and facts, after they drifted since its "
        "approval (the owner changed, the renewal date moved, the risk rose, the plan type's config changed): lifts "
        "its APPROVAL_STALE layer, and the plan runs on if nothing else holds it. Who may: a plan approver (a tenant "
        "admin for a HIGH-risk plan; else 422 RISK_REQUIRES_ELEVATED_AUTHORITY), not the plan's creator "
        "(403 CREATOR_CANNOT_APPROVE) nor anyone who edited it since its last approval (403 EDITED_SINCE_APPROVAL). "
        "A plan not held by a stale approval is 409 (APPROVAL_NOT_STALE; INVALID_TRANSITION unless PAUSED).",
    )
    def post(self, request, plan_id):
        data = validated(VersionInputSerializer, request)
        services.plan_reapprove(plan_id=plan_id, user=request.user, expected_version=data.get("version"))
        return plan_response(request.user, plan_id)


class PlanPauseView(GenericAPIView):
    serializer_class = OptionalReasonInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(request=OptionalReasonInputSerializer, responses={200: RevenuePlanV1Serializer, **WRITE_ERRORS},
                   description="ACTIVE → PAUSED.")
    def post(self, request, plan_id):
        data = validated(OptionalReasonInputSerializer, request)
        services.plan_pause(plan_id=plan_id, user=request.user, reason=data.get("reason", ""),
                            expected_version=data.get("version"))
        return plan_response(request.user, plan_id)


class PlanResumeView(GenericAPIView):
    serializer_class = VersionInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(
        request=VersionInputSerializer, responses={200: RevenuePlanV1Serializer, **WRITE_ERRORS, **errors(422)},
        description="PAUSED → ACTIVE, if the gate still allows it (conflicting plan: 409; other reasons: 422).",
    )
    def post(self, request, plan_id):
        data = validated(VersionInputSerializer, request)
        services.plan_resume(plan_id=plan_id, user=request.user, expected_version=data.get("version"))
        return plan_response(request.user, plan_id)


class PlanAbortInputSerializer(RequiredReasonInputSerializer):
    compensate = serializers.BooleanField(required=False, default=False, help_text=(
        "Also undo the effects of the plan's finished steps (TENANT_ADMIN only; 403 for another role, and then the "
        "plan is not aborted either). The answer is then a report: the plan, what was undone, what could not be "
        "and why."))


class PlanAbortView(GenericAPIView):
    serializer_class = PlanAbortInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(
        request=PlanAbortInputSerializer,
        responses={200: PolymorphicProxySerializer(
            component_name="PlanAbortResult", serializers=[RevenuePlanV1Serializer, PlanAbortReportSerializer],
            resource_type_field_name=None), **WRITE_ERRORS},
        description="Any non-terminal status → ABORTED. A reason is required. Aborting a DRAFT rejects the proposal "
        "(IDEA_REJECTED, with the reason). Without `compensate` the answer is the plan; with `\"compensate\": "
        "true` it is a report {plan, compensated, not_undone, cancelled}: attempts that had not started are "
        "cancelled, and each SUCCEEDED action of the plan is undone through its connector, newest first, each "
        "ledgered; one that cannot be undone is listed with why, and does not stop the others.")
    def post(self, request, plan_id):
        data = validated(PlanAbortInputSerializer, request)
        if data["compensate"]:
            report = plan_abort_compensating(plan_id=plan_id, user=request.user, reason=data["reason"],
                                             expected_version=data.get("version"))
            return Response({"plan": plan_payloads([selectors.plan_for_user(request.user, plan_id)])[0],
                             "compensated": report.compensated, "not_undone": report.not_undone,
                             "cancelled": report.cancelled})
        services.plan_abort(plan_id=plan_id, user=request.user, reason=data["reason"],
                            expected_version=data.get("version"))
        return plan_response(request.user, plan_id)


class PlanReviseView(GenericAPIView):
    serializer_class = OptionalReasonInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(request=OptionalReasonInputSerializer, responses={200: RevenuePlanV1Serializer, **WRITE_ERRORS},
                   description="APPROVED, ACTIVE or PAUSED → DRAFT, to change steps; a new approval must follow.")
    def post(self, request, plan_id):
        data = validated(OptionalReasonInputSerializer, request)
        services.plan_revise(plan_id=plan_id, user=request.user, reason=data.get("reason", ""),
                             expected_version=data.get("version"))
        return plan_response(request.user, plan_id)


class StepApproveView(GenericAPIView):
    serializer_class = VersionInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(request=VersionInputSerializer, responses={200: RevenuePlanV1Serializer, **WRITE_ERRORS},
                   description="Let a PENDING_APPROVAL step of an ACTIVE plan run (the human touch).")
    def post(self, request, plan_id, step_id):
        data = validated(VersionInputSerializer, request)
        services.step_approve(plan_id=plan_id, step_id=step_id, user=request.user,
                              expected_version=data.get("version"))
        return plan_response(request.user, plan_id)


class StepSkipView(GenericAPIView):
    serializer_class = RequiredReasonInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(request=RequiredReasonInputSerializer, responses={200: RevenuePlanV1Serializer, **WRITE_ERRORS},
                   description="Skip an optional step (a required one is 409 REQUIRED_STEP). A reason is required.")
    def post(self, request, plan_id, step_id):
        data = validated(RequiredReasonInputSerializer, request)
        services.step_skip(plan_id=plan_id, step_id=step_id, user=request.user, reason=data["reason"],
                           expected_version=data.get("version"))
        return plan_response(request.user, plan_id)


class StepRetryView(GenericAPIView):
    serializer_class = OptionalReasonInputSerializer
    parser_classes = [JSONParser]

    @extend_schema(
        request=OptionalReasonInputSerializer, responses={200: RevenuePlanV1Serializer, **WRITE_ERRORS},
        description="Start a new series of attempts for a FAILED step of an ACTIVE or PAUSED plan (a redrive): the "
        "step is PENDING again, its RETRY_LIMIT layer is lifted and the plan runs on if nothing else holds it. A "
        "step that is not FAILED is 409 STEP_NOT_FAILED; a DRAFT or finished plan's step is 409 INVALID_TRANSITION.",
    )
    def post(self, request, plan_id, step_id):
        data = validated(OptionalReasonInputSerializer, request)
        services.step_retry(plan_id=plan_id, step_id=step_id, user=request.user, reason=data.get("reason", ""),
                            expected_version=data.get("version"))
        return plan_response(request.user, plan_id)


# --- ledger and why ---------------------------------------------------------------------------


class LedgerFilter(django_filters.FilterSet):
    event_type = django_filters.ChoiceFilter(choices=EventType.choices)

    class Meta:
        model = PlanLedgerEntry
        fields = []


class PlanLedgerView(GenericAPIView):
    """The plan's ledger chain, oldest first."""

    serializer_class = LedgerEntrySerializer
    filterset_class = LedgerFilter
    pagination_class = ApiPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no plan
            return PlanLedgerEntry.objects.none()
        return selectors.ledger_for_plan(selectors.plan_for_user(self.request.user, self.kwargs["plan_id"]))

    @extend_schema(responses={200: LedgerEntrySerializer(many=True), **errors(400, 401, 404)})
    def get(self, request, plan_id):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(LedgerEntrySerializer(page, many=True).data)


class PlanWhyView(GenericAPIView):
    """Why did this plan exist? Why did it stop, or what is it waiting for? With the entries behind it."""

    serializer_class = PlanWhySerializer
    @extend_schema(responses={200: PlanWhySerializer, **READ_ERRORS})
    def get(self, request, plan_id):
        plan = selectors.plan_for_user(request.user, plan_id)
        return Response(PlanWhySerializer(why.plan_why(plan, now=timezone.now())).data)
