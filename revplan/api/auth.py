"""Authentication and identity: tokens that expire and can be revoked, and "who am I"."""
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from revplan.api.authentication import ExpiringTokenAuthentication, token_expires_at, token_for
from revplan.api.common import errors
from revplan.api.errors import ErrorSerializer
from revplan.api.throttles import TokenAddressThrottle, TokenUsernameThrottle


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class TokenView(APIView):
    """POST: exchange a username and password for an API token, sent as `Authorization: Token <token>` until
    `expires_at`. DELETE (with the token): revoke it."""

    def _revoking(self) -> bool:
        return getattr(self.request, "method", None) == "DELETE"  # no request while the schema is generated

    def get_authenticators(self):
        # Logging in needs only the body: a stale token a client still sends must not stand in its way.
        # Revoking needs the token itself (a browser session has none to revoke).
        return [ExpiringTokenAuthentication()] if self._revoking() else []

    def get_permissions(self):
        return [IsAuthenticated()] if self._revoking() else [AllowAny()]

    def get_throttles(self):
        if self._revoking():
            return [throttle() for throttle in api_settings.DEFAULT_THROTTLE_CLASSES]
        return [TokenAddressThrottle(), TokenUsernameThrottle()]

    def get_authenticate_header(self, request):
        # Makes a wrong password a 401 (DRF turns it into a 403 when no scheme is advertised).
        return "Token"

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            200: inline_serializer("TokenResponse", {
                "token": serializers.CharField(),
                "expires_at": serializers.DateTimeField(help_text="After this the token is refused (401); "
                                                                  "ask for a new one here."),
            }),
            400: OpenApiResponse(ErrorSerializer, description="username or password missing"),
            401: OpenApiResponse(ErrorSerializer, description="wrong username or password"),
            **errors(429),
        },
        auth=[],
    )
    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request=request, **serializer.validated_data)
        if user is None or not user.is_active:
            raise AuthenticationFailed("Unable to log in with the username and password given.")
        token = token_for(user=user)
        return Response({"token": token.key, "expires_at": token_expires_at(token)})

    @extend_schema(
        request=None,
        responses={
            204: OpenApiResponse(description="the token is revoked: it authenticates nothing any more"),
            401: OpenApiResponse(ErrorSerializer, description="no token, an unknown one, or an expired one"),
            **errors(429),
        },
    )
    def delete(self, request):
        request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class MembershipSerializer(serializers.Serializer):
    tenant_id = serializers.UUIDField()
    tenant_slug = serializers.CharField(source="tenant.slug")
    role = serializers.CharField()


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    memberships = MembershipSerializer(many=True)


class MeView(APIView):
    """Who the caller is and their role in each tenant (what a UI needs to decide what to show)."""

    @extend_schema(responses={200: MeSerializer, 401: OpenApiResponse(ErrorSerializer)})
    def get(self, request):
        memberships = request.user.memberships.filter(is_active=True).select_related("tenant").order_by("tenant__slug")
        return Response(MeSerializer({"username": request.user.get_username(), "memberships": memberships}).data)
