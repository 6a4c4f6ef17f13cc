"""POST /api/v1/accounts/{id}/transfer/: the account and its open plans move to the new owner, ACTIVE and
PAUSED ones held by APPROVAL_STALE, each ledgered with the reason; every role, another tenant, bad input."""
import pytest

from plans.models import (
    Account,
    EventType,
    PauseKind,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    RevenuePlan,
    Role,
)
from tests.api.helpers import assert_error, client_for
from tests.factories import MembershipFactory, UserFactory, make_plan


def transfer_url(account) -> str:
    return f"/api/v1/accounts/{account.id}/transfer/"


@pytest.fixture
def heir(world):
    user = UserFactory()
    MembershipFactory(user=user, tenant=world.tenant, role=Role.SELLER)
    return user


def state_of(world) -> tuple:
    return (list(Account.objects.filter(tenant=world.tenant).order_by("id").values()),
            list(RevenuePlan.objects.filter(tenant=world.tenant).order_by("id").values()),
            list(PauseLayer.objects.filter(plan__tenant=world.tenant).values()),
            PlanLedgerEntry.objects.filter(tenant=world.tenant).count())


@pytest.mark.parametrize("who", ["approver", "admin"])
def test_an_approver_or_admin_moves_the_account_and_its_open_plans(world, heir, who):
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    draft = make_plan(account=world.account, status=PlanStatus.DRAFT)
    done = make_plan(account=world.account, status=PlanStatus.COMPLETED)
    user = getattr(world, who)
    response = client_for(user).post(transfer_url(world.account), {"new_owner": heir.username,
                                                                   "reason": "territory change"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["owner_id"] == heir.pk
    assert {plan.pk: (plan.owner_id, plan.plan_status) for plan in RevenuePlan.objects.filter(account=world.account)} \
        == {active.pk: (heir.pk, PlanStatus.PAUSED), draft.pk: (heir.pk, PlanStatus.DRAFT),
            done.pk: (world.seller.pk, PlanStatus.COMPLETED)}
    [layer] = PauseLayer.objects.filter(plan=active, lifted_at__isnull=True)
    assert layer.kind == PauseKind.APPROVAL_STALE
    assert "territory change" in layer.explanation
    [account_entry] = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.ACCOUNT_OWNER_CHANGED)
    assert (account_entry.actor, account_entry.data["reason"], account_entry.data["new_owner_id"]) == (
        f"user:{user.pk}", "territory change", heir.pk)
    plan_entries = PlanLedgerEntry.objects.filter(event_type=EventType.PLAN_OWNER_CHANGED)
    assert {(entry.plan_id, entry.data["reason"]) for entry in plan_entries} == {
        (active.pk, "territory change"), (draft.pk, "territory change")}
    # the plan waits for a reapproval, which the API names
    shown = client_for(user).get(f"/api/v1/plans/{active.id}/").json()
    assert [(item["code"], item["verb"]) for item in shown["blocked_by"]] == [("APPROVAL_STALE", "reapprove")]


@pytest.mark.parametrize("who", ["viewer", "seller"])
def test_a_viewer_or_the_owning_seller_gets_403_and_nothing_changes(world, heir, who):
    make_plan(account=world.account, status=PlanStatus.ACTIVE)
    before = state_of(world)
    response = client_for(getattr(world, who)).post(transfer_url(world.account), {"new_owner": heir.username,
                                                                                  "reason": "mine now"}, format="json")
    assert_error(response, 403, "NOT_ALLOWED")
    assert state_of(world) == before


def test_another_tenants_account_is_404_whatever_the_body(world, other_world):
    before = state_of(other_world)
    for body in ({}, {"new_owner": world.seller.username, "reason": "x"}):
        assert_error(client_for(world.admin).post(transfer_url(other_world.account), body, format="json"), 404,
                     "NOT_FOUND")
    assert state_of(other_world) == before


def test_a_missing_reason_an_unknown_user_a_viewer_or_another_tenants_member_is_400(world, other_world):
    before = state_of(world)
    api = client_for(world.approver)
    url = transfer_url(world.account)
    assert_error(api.post(url, {"new_owner": world.admin.username}, format="json"), 400, "VALIDATION_ERROR")
    assert_error(api.post(url, {"new_owner": world.admin.username, "reason": "   "}, format="json"), 400,
                 "VALIDATION_ERROR")
    for stranger in ("nobody-by-this-name", world.viewer.username, other_world.seller.username):
        body = assert_error(api.post(url, {"new_owner": stranger, "reason": "x"}, format="json"), 400,
                            "VALIDATION_ERROR")
        assert "active member" in body["detail"]
    assert_error(api.post(url, {"new_owner": world.admin.username, "reason": "x", "owner_id": 1}, format="json"),
                 400, "VALIDATION_ERROR")
    assert state_of(world) == before


def test_the_current_owner_again_changes_nothing(world):
    make_plan(account=world.account, status=PlanStatus.ACTIVE)
    before = state_of(world)
    response = client_for(world.admin).post(transfer_url(world.account), {"new_owner": world.seller.username,
                                                                          "reason": "no-op"}, format="json")
    assert response.status_code == 200
    assert state_of(world) == before


def test_a_member_whose_login_is_disabled_cannot_be_made_owner(world, heir):
    heir.is_active = False
    heir.save(update_fields=["is_active"])
    before = state_of(world)
    body = assert_error(client_for(world.approver).post(
        transfer_url(world.account), {"new_owner": heir.username, "reason": "x"}, format="json"), 400,
        "VALIDATION_ERROR")
    assert "active member" in body["detail"]
    assert state_of(world) == before
