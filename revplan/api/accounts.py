"""Accounts API: the caller's tenants' accounts, and a change of owner (through services.account_transfer)."""
import django_filters
from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from plans import selectors, services
from plans.models import Account
from revplan.api.common import WRITE_ERRORS, ApiPagination, StrictSerializer, UserIdFilter, errors, validated
from revplan.api.parsers import JSONParser
from revplan.api.serializers import MAX_REASON_LENGTH, AccountSerializer


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


class AccountTransferSerializer(StrictSerializer):
    new_owner = serializers.CharField(max_length=150, help_text="The username of the new owner: an active member "
                                      "of the account's tenant who may own accounts (not a VIEWER).")
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, help_text="Why the account changes hands; kept in "
                                   "the ledger with the change.")


class AccountTransferView(GenericAPIView):
    serializer_class = AccountTransferSerializer
    parser_classes = [JSONParser]

    @extend_schema(
        request=AccountTransferSerializer, responses={200: AccountSerializer, **WRITE_ERRORS},
        description="Ownership change (PLAN_APPROVER or TENANT_ADMIN; DESIGN §3.6): the account and every open plan "
        "of it move to the new owner, each ledgered with the reason. ACTIVE and PAUSED plans get an APPROVAL_STALE "
        "pause layer (the owner is one of the facts they were approved on), lifted by `reapprove`; an OWNER_INACTIVE "
        "layer is replaced by it. The current owner again is a no-op. 400: an unknown username, or one who is not an "
        "active member of the tenant who may own accounts.",
    )
    def post(self, request, account_id):
        account = selectors.account_for_user(request.user, account_id)  # another tenant's: 404 before the body
        data = validated(AccountTransferSerializer, request)
        # An unknown username goes to the service as None: it checks the caller's authority first, then refuses
        # it with the sentence it gives a non-member (whether the name exists in another tenant is not told).
        new_owner_id = (get_user_model().objects.filter(username=data["new_owner"])
                        .values_list("pk", flat=True).first())
        services.account_transfer(account_id=account.id, new_owner_id=new_owner_id, user=request.user,
                                  reason=data["reason"])
        return Response(AccountSerializer(selectors.account_for_user(request.user, account_id)).data)
