"""Authentication and identity: the token exchange and "who am I"."""
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from revplan.api.common import errors
from revplan.api.errors import ErrorSerializer
from revplan.api.throttles import TokenAddressThrottle, TokenUsernameThrottle


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class TokenView(APIView):
    """Exchange a username and password for an API token: send it as `Authorization: Token <token>`."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenAddressThrottle, TokenUsernameThrottle]

    def get_authenticate_header(self, request):
        # Makes a wrong password a 401 (DRF turns it into a 403 when no scheme is advertised).
        return "Token"

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            200: inline_serializer("TokenResponse", {"token": serializers.CharField()}),
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
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


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
