"""Integration tokens API, for tenant admins: list, create, rotate, revoke (thin: plans.services).

The secret is in the answer to create and rotate only (201), never in a list, the ledger or a log.
A client then posts signals with `Authorization: Bearer <secret>`; this module also documents that
security scheme for drf-spectacular (revplan.api.authentication may not import drf-spectacular: DRF
loads it while rest_framework.views is still importing).
"""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from orchestrator.autonomy.selectors import tenant_for_user
from plans import services
from plans.models import IntegrationToken
from plans.services.integration_tokens import NAME_MAX_LENGTH, integration_token_state
from revplan.api.common import ApiPagination, StrictSerializer, UuidStringField, errors, validated
from revplan.api.parsers import JSONParser

TENANT_PARAMETER = OpenApiParameter("tenant", OpenApiTypes.UUID, description="Only this tenant's tokens.")


class IntegrationTokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer rvp_…`, listed only on the operations that accept it."""

    target_class = "revplan.api.authentication.IntegrationTokenAuthentication"
    name = "integrationToken"

    def get_security_requirement(self, auto_schema):
        return {self.name: []} if auto_schema.method in self.target.methods else None

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "rvp_…",
            "description": "A tenant's integration token (created by a tenant admin at /api/v1/integration-tokens/): "
                           "it may only post signals to its tenant's accounts.",
        }


class IntegrationTokenSerializer(serializers.Serializer):
    """A token as a tenant admin sees it: never the secret nor its hash."""

    token_id = serializers.UUIDField(source="id")
    tenant_id = serializers.UUIDField()
    name = serializers.CharField()
    key_prefix = serializers.CharField(help_text="The secret's first characters, to tell tokens apart.")
    state = serializers.SerializerMethodField(help_text="LIVE, EXPIRED or REVOKED.")
    created_by = serializers.CharField(source="created_by.username")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="To the minute.")

    def get_state(self, token: IntegrationToken) -> str:
        return integration_token_state(token).value


class IssuedIntegrationTokenSerializer(IntegrationTokenSerializer):
    secret = serializers.CharField(help_text="Shown this once; only its hash is kept. Send it as "
                                             "`Authorization: Bearer <secret>`.")


class IntegrationTokenCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=NAME_MAX_LENGTH,
                                 help_text="Unique among the tenant's live tokens, e.g. the system it is for.")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                           help_text="Refused from then on; none: until revoked.")
    tenant = UuidStringField(required=False, help_text="The tenant, if you belong to several.")


def issued(token: IntegrationToken, secret: str) -> Response:
    """201 with the token and, this once, its secret."""
    response = Response({**IntegrationTokenSerializer(token).data, "secret": secret}, status=status.HTTP_201_CREATED)
    response["Cache-Control"] = "no-store"  # the secret must not stay in a cache on the way
    return response


class IntegrationTokenListCreateView(GenericAPIView):
    """A tenant admin's integration tokens: list them, or create one (its secret is in this answer only)."""

    serializer_class = IntegrationTokenSerializer
    queryset = IntegrationToken.objects.none()  # for the schema only: get() asks the service
    pagination_class = ApiPagination
    parser_classes = [JSONParser]

    @extend_schema(parameters=[TENANT_PARAMETER],
                   responses={200: IntegrationTokenSerializer(many=True), **errors(400, 401, 403, 404)})
    def get(self, request):
        tenant = request.query_params.get("tenant")
        tokens = services.integration_tokens_list(
            user=request.user, tenant_id=tenant_for_user(request.user, tenant) if tenant else None)
        page = self.paginate_queryset(tokens)
        return self.get_paginated_response(IntegrationTokenSerializer(page, many=True).data)

    @extend_schema(request=IntegrationTokenCreateSerializer,
                   responses={201: IssuedIntegrationTokenSerializer, **errors(400, 401, 403, 404, 409, 413)},
                   description="Create a token that may post signals to the tenant's accounts. The secret is in "
                               "this answer only; store it in the sending system.")
    def post(self, request):
        data = validated(IntegrationTokenCreateSerializer, request)
        tenant_id = tenant_for_user(request.user, str(data["tenant"]) if data.get("tenant") else None)
        token, secret = services.integration_token_create(tenant_id=tenant_id, name=data["name"],
                                                          expires_at=data["expires_at"], user=request.user)
        return issued(token, secret)


class IntegrationTokenRotateView(GenericAPIView):
    serializer_class = IssuedIntegrationTokenSerializer

    @extend_schema(request=None, responses={201: IssuedIntegrationTokenSerializer, **errors(401, 403, 404, 409)},
                   description="Revoke the token and issue its successor (same name, same lifetime from now); the "
                               "new secret is in this answer only.")
    def post(self, request, token_id):
        token, secret = services.integration_token_rotate(token_id=token_id, user=request.user)
        return issued(token, secret)


class IntegrationTokenRevokeView(GenericAPIView):
    serializer_class = IntegrationTokenSerializer

    @extend_schema(request=None, responses={200: IntegrationTokenSerializer, **errors(401, 403, 404)},
                   description="Refuse the token from now on (revoking a revoked token changes nothing).")
    def post(self, request, token_id):
        token = services.integration_token_revoke(token_id=token_id, user=request.user)
        return Response(IntegrationTokenSerializer(token).data)
