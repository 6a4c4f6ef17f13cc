"""Accounts API: the caller's tenants' accounts (read-only; ownership changes go through services)."""
import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from plans import selectors
from plans.models import Account
from revplan.api.common import ApiPagination, UserIdFilter, errors
from revplan.api.serializers import AccountSerializer


class AccountFilter(django_filters.FilterSet):
    owner = UserIdFilter(field_name="owner_id", help_text="User id of the account's owner.")
    ordering = django_filters.OrderingFilter(
        fields=("name", "renewal_date", "created_at"),
        help_text="Sort key; prefix with - for descending. Default: name.",
    )

    class Meta:
        model = Account
        fields = []


class AccountListView(GenericAPIView):
    serializer_class = AccountSerializer
    filterset_class = AccountFilter
    pagination_class = ApiPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return Account.objects.none()
        return selectors.accounts_for_user(self.request.user)

    @extend_schema(responses={200: AccountSerializer(many=True), **errors(400, 401, 404)})
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(AccountSerializer(page, many=True).data)


class AccountDetailView(GenericAPIView):
    serializer_class = AccountSerializer
    @extend_schema(responses={200: AccountSerializer, **errors(401, 404)})
    def get(self, request, account_id):
        return Response(AccountSerializer(selectors.account_for_user(request.user, account_id)).data)
