"""One exception handler: domain and DRF errors become {"code", "detail", "reasons"} (DESIGN §7)."""
import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from plans.errors import DomainError

logger = logging.getLogger(__name__)


class ReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """Every API error: {"code", "detail", "reasons": [{"code", "detail"}]} (DESIGN §7)."""

    code = serializers.CharField()
    detail = serializers.CharField()
    reasons = ReasonSerializer(many=True)

_DRF_CODES = {
    exceptions.NotAuthenticated: "NOT_AUTHENTICATED",
    exceptions.AuthenticationFailed: "AUTHENTICATION_FAILED",
    exceptions.PermissionDenied: "NOT_ALLOWED",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.Throttled: "THROTTLED",
    exceptions.ParseError: "MALFORMED_REQUEST",
    exceptions.ValidationError: "VALIDATION_ERROR",
}


def _field_reasons(detail, prefix: str = "") -> list[dict]:
    """Flatten DRF's nested validation detail into [{"code", "detail"}] with the field path."""
    if isinstance(detail, dict):
        return [reason for key, value in detail.items() for reason in _field_reasons(value, f"{prefix}{key}.")]
    if isinstance(detail, list):
        return [reason for item in detail for reason in _field_reasons(item, prefix)]
    field = prefix.rstrip(".")
    text = str(detail)
    return [{"code": "INVALID_FIELD", "detail": f"{field}: {text}" if field and field != "non_field_errors" else text}]


def error_body(code: str, detail: str, reasons: list[dict] | None = None) -> dict:
    return {"code": code, "detail": detail, "reasons": reasons or []}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(
            error_body(exc.code, exc.detail, [reason.as_dict() for reason in exc.reasons]), status=exc.http_status
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("REQUEST_TOO_LARGE", "The request body is larger than this API accepts."),
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body("MALFORMED_REQUEST", "The request was refused as malformed."),
                        status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is None:
        # No stack trace leaves the server; the log has it, with the view that failed.
        logger.exception("unhandled API error", extra={"view": type(context.get("view")).__name__})
        return Response(
            error_body("INTERNAL_ERROR", "Something went wrong on our side; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    code = next((code for cls, code in _DRF_CODES.items() if isinstance(exc, cls)), "ERROR")
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(code, "The request is not valid.", _field_reasons(exc.detail))
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        response.data = error_body(code, str(exc.detail))
    return response


def not_found_view(request, exception):
    """Django's 404 for URLs no route matched (e.g. a malformed id): JSON under /api/, HTML elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse(error_body("NOT_FOUND", "No API endpoint or object matches this URL."), status=404)
    return page_not_found(request, exception)
