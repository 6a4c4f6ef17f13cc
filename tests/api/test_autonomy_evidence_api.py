"""The evidence API: SHADOW set like the other modes, agreement per action type, proposals confirmed or dismissed."""
import json
import uuid

import pytest
from django.test import override_settings

from orchestrator.autonomy import review
from orchestrator.autonomy.models import ActionTypeAutonomy, AutonomyProposal
from plans import services
from plans.models import PlanLedgerEntry
from tests.api.helpers import assert_error, client_for
from tests.factories import AccountFactory
from tests.orchestrator.autonomy.test_review import THRESHOLDS, set_mode, shadow_rows
from tests.orchestrator.autonomy.test_shadow import waiting_plan
from tests.orchestrator.test_engine import BRIEF

pytestmark = pytest.mark.django_db
SHADOW_REPORT, PROPOSALS = "/api/v1/autonomy/shadow/", "/api/v1/autonomy/proposals/"


def set_shadow(world):
    response = client_for(world.admin).patch(f"/api/v1/autonomy/action-types/{BRIEF}/", {"mode": "SHADOW"},
                                             format="json")
    assert response.status_code == 200, response.content
    return response


def test_an_admin_sets_shadow_mode_like_any_other(world):
    brief = next(row for row in set_shadow(world).json()["action_types"] if row["action_type"] == BRIEF)
    assert brief["mode"] == "SHADOW"


def test_a_step_waiting_in_shadow_mode_says_why_on_the_plan(world):
    set_shadow(world)
    plan = waiting_plan(world)
    body = client_for(world.viewer).get(f"/api/v1/plans/{plan.id}/why/").json()
    assert "shadow mode" in json.dumps(body)
    [blocked] = client_for(world.viewer).get(f"/api/v1/plans/{plan.id}/").json()["blocked_by"]
    assert blocked["waits_on"] == "PERSON"


def test_the_report_shows_agreement_per_action_type_to_any_member(world, other_world):
    set_shadow(world)
    plans = [waiting_plan(world, account=account)
             for account in (world.account, AccountFactory(tenant=world.tenant, owner=world.seller))]
    services.step_approve(plan_id=plans[0].id, step_id=plans[0].steps.get().step_id, user=world.seller)
    body = client_for(world.viewer).get(SHADOW_REPORT).json()
    [row] = body["action_types"]
    assert (row["action_type"], row["mode"], row["agreed"], row["agreement"]) == (BRIEF, "SHADOW", 1, 1.0)
    assert (row["would_run"]["total"], row["would_run"]["decided"]) == (2, 1)
    assert row["would_run"]["by_person_decision"]["UNDECIDED"] == 1
    # another tenant sees none of it
    assert client_for(other_world.viewer).get(SHADOW_REPORT).json()["action_types"] == []


@pytest.mark.parametrize("days", ["0", "366", "x", "1e3", "-1"])
def test_a_window_out_of_range_is_a_400(world, days):
    assert_error(client_for(world.viewer).get(SHADOW_REPORT, {"days": days}), 400, "VALIDATION_ERROR")


@override_settings(**THRESHOLDS)
def test_an_admin_confirms_a_proposal_and_the_mode_changes(world, other_world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5)
    review.review_tenant(world.tenant.id)
    [listed] = client_for(world.viewer).get(PROPOSALS).json()["results"]
    assert (listed["action_type"], listed["from_mode"], listed["to_mode"], listed["status"]) == (
        BRIEF, "SHADOW", "AUTO_EXECUTE", "PROPOSED")
    assert listed["evidence"]["agreed"] == 5
    assert client_for(other_world.admin).get(PROPOSALS).json()["results"] == []
    confirm = f"{PROPOSALS}{listed['proposal_id']}/confirm/"
    entries = PlanLedgerEntry.objects.count()
    assert_error(client_for(world.seller).post(confirm), 403, "NOT_ALLOWED")
    assert_error(client_for(other_world.admin).post(confirm), 404, "NOT_FOUND")
    assert PlanLedgerEntry.objects.count() == entries
    response = client_for(world.admin).post(confirm)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "CONFIRMED"
    assert ActionTypeAutonomy.objects.get(tenant=world.tenant, action_type=BRIEF).mode == "AUTO_EXECUTE"
    assert_error(client_for(world.admin).post(confirm), 409, "PROPOSAL_NOT_OPEN")


@override_settings(**THRESHOLDS)
def test_an_admin_dismisses_a_proposal(world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5)
    review.review_tenant(world.tenant.id)
    proposal = AutonomyProposal.objects.get(tenant=world.tenant)
    response = client_for(world.admin).post(f"{PROPOSALS}{proposal.id}/dismiss/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "DISMISSED"
    assert ActionTypeAutonomy.objects.get(tenant=world.tenant, action_type=BRIEF).mode == "SHADOW"


def test_an_unknown_proposal_is_a_404(world):
    assert_error(client_for(world.admin).post(f"{PROPOSALS}{uuid.uuid4()}/confirm/"), 404, "NOT_FOUND")
