"""Action verbs: cancel an action before it runs, undo (compensate) one that succeeded; and the report of
aborting a plan with its effects undone (thin: orchestrator.execution.cancel and .compensation decide)."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from orchestrator.execution.cancel import intent_cancel
from orchestrator.execution.compensation import intent_compensate
from orchestrator.execution.selectors import intents_for_user
from revplan.api.common import StrictSerializer, errors, validated
from revplan.api.parsers import JSONParser
from revplan.api.serializers import MAX_REASON_LENGTH, ActionIntentDetailSerializer, RevenuePlanV1Serializer

ACTION_WRITE_ERRORS = errors(400, 401, 403, 404, 409, 413)


class ActionReasonSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, required=False, allow_blank=True,
                                   help_text="Why; kept in the ledger.")


class UndoneItemSerializer(serializers.Serializer):
    intent_id = serializers.UUIDField()
    action_type = serializers.CharField()
    step_id = serializers.UUIDField(allow_null=True)


class NotUndoneItemSerializer(UndoneItemSerializer):
    reason = serializers.CharField(help_text="Why it was not undone: irreversible, the connector's classified "
                                   "failure (never its raw answer), or still running.")


class CompensationResultSerializer(serializers.Serializer):
    intent = ActionIntentDetailSerializer()
    undone = serializers.BooleanField(help_text="False when the connector could not undo it (ledgered as "
                                      "ACTION_FAILED with reason COMPENSATION_FAILED); the effect stands.")
    reason = serializers.CharField(allow_null=True, help_text="Why it was not undone; null when it was.")


class PlanAbortReportSerializer(serializers.Serializer):
    """What POST /plans/{id}/abort/ with `"compensate": true` did."""

    plan = RevenuePlanV1Serializer()
    compensated = UndoneItemSerializer(many=True, help_text="Each finished step's action undone, newest first; "
                                       "each is an ACTION_COMPENSATED ledger entry.")
    not_undone = NotUndoneItemSerializer(many=True, help_text="What could not be undone, and why.")
    cancelled = UndoneItemSerializer(many=True, help_text="Attempts that had not started, cancelled by the abort.")


def intent_payload(user, intent_id) -> dict:
    return ActionIntentDetailSerializer(intents_for_user(user).get(pk=intent_id)).data


class ActionCancelView(GenericAPIView):
    serializer_class = ActionReasonSerializer
    parser_classes = [JSONParser]

    @extend_schema(
        request=ActionReasonSerializer, responses={200: ActionIntentDetailSerializer, **ACTION_WRITE_ERRORS},
        description="Cancel an action that has not started (PENDING: waiting for a worker, held back by a kill switch "
        "or breaker, waiting for its paused plan). It ends CANCELLED (ACTION_CANCELLED in the ledger), and its plan "
        "gets a PERSON pause layer: the step is not tried again on its own; a resume makes a new attempt of it "
        "(a new series, the cancelled attempt counts for nothing). The plan's owner, a PLAN_APPROVER or a "
        "TENANT_ADMIN, as for a pause. 409 INTENT_NOT_CANCELLABLE: it is running or finished — a worker that claims "
        "it at the same moment wins or loses as a whole, never both.",
    )
    def post(self, request, intent_id):
        data = validated(ActionReasonSerializer, request)
        intent = intent_cancel(intent_id=intent_id, user=request.user, reason=data.get("reason", ""))
        return Response(intent_payload(request.user, intent.id))


class ActionCompensateView(GenericAPIView):
    serializer_class = ActionReasonSerializer
    parser_classes = [JSONParser]

    @extend_schema(
        request=ActionReasonSerializer, responses={200: CompensationResultSerializer, **ACTION_WRITE_ERRORS},
        description="Undo what a SUCCEEDED action did (TENANT_ADMIN): the internal connector deletes its record, the "
        "calendar its draft meeting, the CRM its task (HTTP DELETE). Ledgered as ACTION_COMPENSATED. 409 "
        "INTENT_NOT_COMPENSABLE: not SUCCEEDED, undone already, or made by a connector that cannot undo. When the "
        "connector fails to undo it, the answer is 200 with `undone: false` and the classified reason (ledgered "
        "too); it can be tried again.",
    )
    def post(self, request, intent_id):
        data = validated(ActionReasonSerializer, request)
        undo = intent_compensate(intent_id=intent_id, user=request.user, reason=data.get("reason", ""))
        return Response({"intent": intent_payload(request.user, undo.intent.id), "undone": undo.undone,
                         "reason": undo.reason or None})
