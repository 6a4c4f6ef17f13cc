"""Serializers for the execution status API."""
from rest_framework import serializers

from orchestrator.execution.explain import explain_intent
from orchestrator.execution.models import ActionIntent, ExecutionAttempt


class ExecutionAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExecutionAttempt
        fields = ["number", "outcome", "error", "delay_before_seconds", "started_at", "finished_at", "external_ids"]


class ActionIntentStatusSerializer(serializers.ModelSerializer):
    intent_id = serializers.UUIDField(source="id")
    account_id = serializers.UUIDField()
    plan_id = serializers.UUIDField(allow_null=True)
    explanation = serializers.SerializerMethodField()
    attempt_history = ExecutionAttemptSerializer(source="execution_attempts", many=True)

    class Meta:
        model = ActionIntent
        fields = [
            "intent_id", "account_id", "action_type", "status", "explanation", "connector", "external_ids",
            "failure_class", "failure_reason", "attempts", "plan_id", "step_id", "attempt", "approving_policy",
            "expires_at", "created_at", "started_at", "finished_at", "compensated_at", "attempt_history",
        ]

    def get_explanation(self, intent: ActionIntent) -> str:
        return explain_intent(intent)
