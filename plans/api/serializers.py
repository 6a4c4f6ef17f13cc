"""API serializers: input validation and the documented error shape."""
from rest_framework import serializers


class ReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """Every API error: {"code", "detail", "reasons": [{"code", "detail"}]} (DESIGN §7)."""

    code = serializers.CharField()
    detail = serializers.CharField()
    reasons = ReasonSerializer(many=True)
