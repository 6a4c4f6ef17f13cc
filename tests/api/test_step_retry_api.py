"""POST /api/v1/plans/{id}/steps/{step_id}/retry/: a person's redrive of a FAILED step, and resume's
refusal that names it; every refusal in the §7 shape and changing nothing."""
import pytest

from plans.models import PauseLayer, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from tests.api.helpers import assert_error, client_for
from tests.factories import make_plan
from tests.support.stalls import fail_at_the_limit

PLANS = "/api/v1/plans/"
BRIEF = "PREP_RENEWAL_BRIEF"


def state_of(plan) -> tuple:
    return (
        RevenuePlan.objects.filter(pk=plan.pk).values().get(),
        list(PlanStep.objects.filter(plan=plan).order_by("sequence").values()),
        list(PauseLayer.objects.filter(plan=plan).order_by("id").values()),
        list(PlanLedgerEntry.objects.order_by("id").values_list("id", flat=True)),
    )


@pytest.fixture
def held(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    step = fail_at_the_limit(plan, plan.steps.get())
    return plan, step


def test_resume_is_409_step_failed_naming_the_ways_forward_then_retry_runs_the_plan_on(world, held):
    plan, step = held
    api = client_for(world.seller)
    before = state_of(plan)
    # when: resume alone
    refused = assert_error(api.post(f"{PLANS}{plan.id}/resume/", {}, format="json"), 409, "STEP_FAILED")
    # then: nothing changed, and the refusal says what would lift it
    assert state_of(plan) == before
    assert "retry it" in refused["detail"]
    assert [reason["code"] for reason in refused["reasons"]] == ["RETRY_LIMIT"]
    shown = api.get(f"{PLANS}{plan.id}/").json()
    assert [(item["code"], item["verb"], item["step_id"]) for item in shown["blocked_by"]] == [
        ("RETRY_LIMIT", "retry_step", str(step.step_id))]
    # when: retry
    response = api.post(f"{PLANS}{plan.id}/steps/{step.step_id}/retry/",
                        {"reason": "The CRM is back.", "version": shown["version"]}, format="json")
    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["plan_status"] == "ACTIVE"
    assert body["blocked_by"] == []
    [retried] = body["steps"]
    assert (retried["status"], retried["attempts"], retried["attempts_before_series"]) == ("PENDING", 3, 3)


def test_retry_of_a_step_that_did_not_fail_is_409_step_not_failed(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,))
    step = plan.steps.get()
    before = state_of(plan)
    assert_error(client_for(world.seller).post(f"{PLANS}{plan.id}/steps/{step.step_id}/retry/", {}, format="json"),
                 409, "STEP_NOT_FAILED")
    assert state_of(plan) == before


@pytest.mark.parametrize("plan_status", [PlanStatus.DRAFT, PlanStatus.ABORTED, PlanStatus.COMPLETED])
def test_retry_on_a_draft_or_finished_plan_is_409_invalid_transition(world, plan_status):
    plan = make_plan(account=world.account, status=plan_status, action_types=(BRIEF,))
    step = plan.steps.get()
    PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.FAILED, attempts=3)
    before = state_of(plan)
    assert_error(client_for(world.seller).post(f"{PLANS}{plan.id}/steps/{step.step_id}/retry/", {}, format="json"),
                 409, "INVALID_TRANSITION")
    assert state_of(plan) == before


def test_retry_with_a_stale_version_is_409_and_an_unknown_field_is_400(world, held):
    plan, step = held
    api = client_for(world.seller)
    before = state_of(plan)
    url = f"{PLANS}{plan.id}/steps/{step.step_id}/retry/"
    assert_error(api.post(url, {"version": plan.version - 1}, format="json"), 409, "VERSION_CONFLICT")
    assert_error(api.post(url, {"attempts": 0}, format="json"), 400, "VALIDATION_ERROR")
    assert state_of(plan) == before


def test_another_seller_may_not_retry_the_owners_step(world, held):
    from plans.models import Role
    from tests.factories import MembershipFactory, UserFactory

    plan, step = held
    other_seller = UserFactory()
    MembershipFactory(user=other_seller, tenant=world.tenant, role=Role.SELLER)
    before = state_of(plan)
    assert_error(client_for(other_seller).post(f"{PLANS}{plan.id}/steps/{step.step_id}/retry/", {}, format="json"),
                 403, "NOT_ALLOWED")
    assert state_of(plan) == before
