"""POST /api/v1/plans/{id}/reapprove/, the approval refusals over HTTP, and the `approval` each plan and
step carries: {state: CURRENT|VOID|STALE, approved_by, approved_at, changed_since}."""
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator import engine
from plans import services
from plans.models import EventType, PauseKind, PauseLayer, PlanLedgerEntry, PlanStatus, Role
from plans.proposals import renewal_defense_draft
from plans.schemas import PlanDraftInput, StepInput
from tests.api.helpers import assert_error, client_for
from tests.factories import AccountFactory, MembershipFactory, UserFactory, make_plan

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


def approved(world, *action_types, approver=None, account=None):
    plan = services.plan_propose(account_id=(account or world.account).id, plan_type="RENEWAL_DEFENSE",
                                 draft=PlanDraftInput(steps=[StepInput(action_type=a) for a in action_types]),
                                 actor=world.seller)
    return services.plan_approve(plan_id=plan.id, user=approver or world.approver)


def stale(world, *action_types, approver=None):
    """An ACTIVE plan whose account was handed to another seller: PAUSED, held by APPROVAL_STALE."""
    plan = approved(world, *action_types, approver=approver)
    engine.advance_plan(plan.id)
    heir = UserFactory()
    MembershipFactory(user=heir, tenant=world.tenant, role=Role.SELLER)
    services.account_transfer(account_id=world.account.id, new_owner_id=heir.pk, user=world.admin,
                              reason="tests: a new owner")
    return plan, heir


def status_of(plan) -> str:
    plan.refresh_from_db()
    return plan.plan_status


def reapprove(user, plan, **body):
    return client_for(user).post(f"/api/v1/plans/{plan.id}/reapprove/", body, format="json")


def test_reapprove_lifts_the_stale_layer_and_the_plan_runs_on(world):
    plan, heir = stale(world, MEETING, BRIEF)
    plan.refresh_from_db()
    body = client_for(world.viewer).get(f"/api/v1/plans/{plan.id}/").json()
    assert body["approval"]["state"] == "STALE"
    assert body["approval"]["changed_since"] == [{"field": "owner_id", "before": world.seller.pk, "after": heir.pk}]

    response = reapprove(world.approver, plan, version=plan.version)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["plan_status"] == PlanStatus.ACTIVE
    assert body["approval"]["state"] == "CURRENT"
    assert body["approval"]["approved_by"] == world.approver.pk
    assert body["approval"]["changed_since"] == []
    assert not PauseLayer.objects.filter(plan=plan, lifted_at__isnull=True).exists()
    assert PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.PLAN_REAPPROVED).count() == 1


def test_a_plan_not_held_by_a_stale_approval_cannot_be_reapproved(world):
    plan = approved(world, BRIEF)
    assert_error(reapprove(world.approver, plan), 409, "INVALID_TRANSITION")  # APPROVED, not PAUSED
    engine.advance_plan(plan.id)
    services.plan_pause(plan_id=plan.id, user=world.seller)
    body = assert_error(reapprove(world.approver, plan), 409, "APPROVAL_NOT_STALE")
    assert [reason["code"] for reason in body["reasons"]] == [PauseKind.PERSON]


@pytest.mark.parametrize(("caller", "code"), [("viewer", "NOT_ALLOWED"), ("seller", "NOT_ALLOWED")])
def test_only_an_approver_may_reapprove(world, caller, code):
    plan, _ = stale(world, BRIEF)
    assert_error(reapprove(getattr(world, caller), plan), 403, code)
    assert status_of(plan) == PlanStatus.PAUSED


def test_the_creator_may_not_reapprove(world):
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=renewal_defense_draft(signal_types=set()), actor=world.approver)
    services.plan_approve(plan_id=plan.id, user=world.admin)
    engine.advance_plan(plan.id)
    heir = UserFactory()
    MembershipFactory(user=heir, tenant=world.tenant, role=Role.SELLER)
    services.account_transfer(account_id=world.account.id, new_owner_id=heir.pk, user=world.admin,
                              reason="tests: a new owner")
    assert_error(reapprove(world.approver, plan), 403, "CREATOR_CANNOT_APPROVE")


def test_a_high_risk_plan_needs_a_tenant_admin_to_reapprove(world):
    plan, _ = stale(world, MEETING, ESCALATE, approver=world.admin)
    body = assert_error(reapprove(world.approver, plan), 422, "POLICY_GATE_REFUSED")
    assert [reason["code"] for reason in body["reasons"]] == ["RISK_REQUIRES_ELEVATED_AUTHORITY"]
    rejected = PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.POLICY_REJECTED).get()
    assert rejected.data["attempted"] == "reapprove"
    assert reapprove(world.admin, plan).status_code == 200


def test_an_approver_who_edited_the_draft_is_refused_with_a_reason_code(world):
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=renewal_defense_draft(signal_types=set()), actor=world.seller)
    api = client_for(world.approver)
    assert api.patch(f"/api/v1/plans/{plan.id}/", {"objective": "Renew with the new sponsor"},
                     format="json").status_code == 200

    body = assert_error(api.post(f"/api/v1/plans/{plan.id}/approve/", {}, format="json"), 403,
                        "EDITED_SINCE_APPROVAL")

    assert body["reasons"][0]["code"] == "EDITED_SINCE_APPROVAL"
    assert client_for(world.admin).post(f"/api/v1/plans/{plan.id}/approve/", {}, format="json").status_code == 200


def test_a_second_plan_approval_is_409_naming_the_first(world):
    first = approved(world, BRIEF)
    second = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                   draft=renewal_defense_draft(signal_types=set()), actor=world.seller)

    body = assert_error(client_for(world.approver).post(f"/api/v1/plans/{second.id}/approve/", {}, format="json"),
                        409, "CONFLICT_ACTIVE_PLAN_EXISTS")

    assert str(first.id) in body["detail"]


def test_the_payload_says_what_changed_since_each_approval(world):
    # given: an active plan whose brief a person approved, then revised and the brief's subject changed
    brief_id = uuid.uuid4()
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE", actor=world.seller,
                                 draft=PlanDraftInput(steps=[StepInput(step_id=brief_id, action_type=BRIEF)]))
    api = client_for(world.viewer)
    body = api.get(f"/api/v1/plans/{plan.id}/").json()
    assert (body["approval"], body["steps"][0]["approval"]) == (None, None)  # never approved
    services.plan_approve(plan_id=plan.id, user=world.approver)
    engine.advance_plan(plan.id)
    services.step_approve(plan_id=plan.id, step_id=brief_id, user=world.seller)
    body = api.get(f"/api/v1/plans/{plan.id}/").json()
    assert body["approval"]["state"] == body["steps"][0]["approval"]["state"] == "CURRENT"
    services.plan_revise(plan_id=plan.id, user=world.seller)
    services.plan_edit(plan_id=plan.id, user=world.seller, draft=PlanDraftInput(steps=[
        StepInput(step_id=brief_id, action_type=BRIEF, parameters={"subject": "For the new sponsor"})]))

    body = api.get(f"/api/v1/plans/{plan.id}/").json()

    change = {"field": "parameters", "before": {}, "after": {"subject": "For the new sponsor"}}
    step_approval = body["steps"][0]["approval"]
    assert (step_approval["state"], step_approval["approved_by"], step_approval["changed_since"]) == (
        "VOID", world.seller.pk, [change])
    assert body["approval"]["state"] == "VOID"
    assert body["approval"]["approved_by"] == world.approver.pk
    assert body["approval"]["changed_since"] == [{**change, "field": f"steps.{brief_id}.parameters"}]
    assert body["edited_by_since_approval"] == [world.seller.pk]


def test_the_approval_payload_costs_no_query_per_plan(world):
    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client_for(world.viewer).get("/api/v1/plans/?page_size=50").status_code == 200
        return len(queries)

    approved(world, BRIEF)
    one = list_queries()
    for _ in range(6):
        approved(world, BRIEF, account=AccountFactory(tenant=world.tenant, owner=world.seller))
    make_plan(account=world.account, status=PlanStatus.DRAFT)
    assert list_queries() == one
