"""What every API view shares: documented error responses, pagination, strict input, request validation."""
import django_filters
from django import forms
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from revplan.api.errors import ErrorSerializer
from revplan.api.pagination import ApiPagination  # noqa: F401  (every list view imports it from here)

INT_MAX = 2**31 - 1

_ERROR_DESCRIPTIONS = {
    400: "malformed request, unknown values, or a missing reason",
    401: "not authenticated",
    403: "the caller's role may not do this",
    404: "unknown, or another tenant's",
    406: "the Accept header names none of the operation's media types",
    409: "invalid transition, version mismatch, required step, or a conflicting ACTIVE plan",
    413: "request body too large",
    422: "the policy gate refused; `reasons` holds its reason codes",
    429: "too many requests; retry after the time in the Retry-After header",
}


def errors(*statuses: int) -> dict:
    """drf-spectacular responses for the given error statuses, each in the §7 error shape."""
    return {code: OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS[code]) for code in statuses}


READ_ERRORS = errors(401, 404)
WRITE_ERRORS = errors(400, 401, 403, 404, 409, 413)


def validated(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (a typo or a status sent by hand is a 400, not silently dropped)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class UuidStringField(serializers.UUIDField):
    """A UUID sent as a string only: DRF's UUIDField turns any integer (and so `false`, `0`) into a UUID."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class UserIdFilter(django_filters.NumberFilter):
    """An integer user id within PostgreSQL's integer range (a larger one is a 400, not a 500)."""

    field_class = forms.IntegerField

    def __init__(self, **kwargs):
        super().__init__(min_value=1, max_value=INT_MAX, **kwargs)
