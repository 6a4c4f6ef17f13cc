"""The proposal generator: the rule-based default, the LLM proposer against a local endpoint, propose_plans."""
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from plans import proposals
from plans.errors import PolicyRefused
from plans.llm_proposer import PROPOSAL_REJECTED, PROPOSER_UNAVAILABLE, ProposerUnavailable
from plans.models import AccountSignal, EventType, PlanLedgerEntry, PlanStatus, RevenuePlan
from plans.services import SystemActor
from tests.factories import AccountFactory, make_plan
from tests.support.llm_server import LlmServer

pytestmark = pytest.mark.django_db
ACTOR = SystemActor("proposal_generator")


@pytest.fixture
def llm(settings):
    server = LlmServer()
    settings.REVPLAN_PROPOSER = "llm"
    settings.REVPLAN_LLM = {"base_url": server.url, "api_key": "sk-test", "model": "test-model",
                            "timeout_seconds": 1.0}
    yield server
    server.close()


def answer(llm, *action_types, objective="Keep the renewal on track"):
    llm.state.content = json.dumps({"objective": objective, "steps": [{"action_type": a} for a in action_types]})


def plans_of(account):
    return RevenuePlan.objects.filter(account=account)


def test_rule_based_escalates_only_on_support_risk(world):
    calm = proposals.propose_for_account(account_id=world.account.id, actor=world.seller)
    risky_account = AccountFactory(tenant=world.tenant, owner=world.seller)
    AccountSignal.objects.create(account=risky_account, signal_type="SUPPORT_RISK", observed_at=timezone.now())

    risky = proposals.propose_for_account(account_id=risky_account.id, actor=world.seller)

    calm_steps = list(calm.steps.order_by("sequence").values_list("action_type", "depends_on"))
    assert [a for a, _ in calm_steps] == ["REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF"]
    assert calm_steps[0][1] == []
    assert calm_steps[1][1] == [str(calm.steps.get(sequence=0).step_id)]
    assert list(risky.steps.order_by("sequence").values_list("action_type", flat=True)) == [
        "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"]
    assert risky.plan_status == PlanStatus.DRAFT
    created = PlanLedgerEntry.objects.get(plan=risky, event_type=EventType.PLAN_CREATED)
    assert created.data["inputs"]["proposer"] == "rules"
    assert created.data["inputs"]["signal_types"] == ["SUPPORT_RISK"]
    assert created.data["inputs"]["account_id"] == str(risky_account.id)


def test_llm_plan_is_drafted_with_its_objective_and_the_request_is_bounded(world, llm):
    answer(llm, "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF")

    plan = proposals.propose_for_account(account_id=world.account.id, actor=world.seller)

    assert plan.plan_status == PlanStatus.DRAFT
    assert plan.objective == "Keep the renewal on track"
    assert list(plan.steps.order_by("sequence").values_list("action_type", flat=True)) == [
        "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF"]
    ((path, headers, body),) = llm.state.requests
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "test-model"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["objective", "steps"]
    assert "ESCALATE_SUPPORT_RISK" in body["messages"][0]["content"]
    summary = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.PLAN_CREATED).data["inputs"]
    assert (summary["proposer"], summary["dropped_action_types"]) == ("llm:test-model", [])


def test_llm_disallowed_step_is_dropped_and_the_rest_accepted(world, llm):
    answer(llm, "REQUEST_RENEWAL_MEETING", "WIRE_MONEY", "PREP_RENEWAL_BRIEF")

    plan = proposals.propose_for_account(account_id=world.account.id, actor=world.seller)

    assert list(plan.steps.order_by("sequence").values_list("action_type", flat=True)) == [
        "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF"]
    summary = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.PLAN_CREATED).data["inputs"]
    assert summary["dropped_action_types"] == ["WIRE_MONEY"]


def test_llm_with_only_disallowed_steps_is_rejected_and_nothing_is_persisted(world, llm):
    answer(llm, "WIRE_MONEY", "DELETE_ACCOUNT")

    with pytest.raises(PolicyRefused) as refused:
        proposals.propose_for_account(account_id=world.account.id, actor=world.seller)

    assert refused.value.code == PROPOSAL_REJECTED
    assert not plans_of(world.account).exists()
    assert not PlanLedgerEntry.objects.filter(tenant=world.tenant).exists()


@pytest.mark.parametrize("content", ["{not json", '{"objective": "x"}', '{"objective": "", "steps": []}', "[]"])
def test_llm_malformed_answer_is_a_clear_error_and_nothing_is_persisted(world, llm, content):
    llm.state.content = content

    with pytest.raises(ProposerUnavailable) as failed:
        proposals.propose_for_account(account_id=world.account.id, actor=world.seller)

    assert failed.value.code == PROPOSER_UNAVAILABLE
    assert "not a plan proposal" in failed.value.detail
    assert not plans_of(world.account).exists()


def test_llm_timeout_is_a_clear_error_and_nothing_is_persisted(world, llm):
    answer(llm, "PREP_RENEWAL_BRIEF")
    llm.state.delay_seconds = 2.0  # the fixture's timeout is 1 s

    with pytest.raises(ProposerUnavailable) as failed:
        proposals.propose_for_account(account_id=world.account.id, actor=world.seller)

    assert failed.value.detail == "The LLM proposer did not answer within 1.0 s."
    assert not plans_of(world.account).exists()


def test_propose_plans_drafts_once_per_eligible_account(world):
    today = timezone.localdate()
    world.account.renewal_date = today + timedelta(days=90)
    world.account.save()
    too_far = AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=today + timedelta(days=200))
    too_close = AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=today + timedelta(days=10))
    busy = AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=today + timedelta(days=60))
    make_plan(account=busy, status=PlanStatus.ACTIVE)
    done = AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=today + timedelta(days=60))
    make_plan(account=done, status=PlanStatus.COMPLETED)

    first, second = StringIO(), StringIO()
    call_command("propose_plans", "--tenant", world.tenant.slug, "--no-progress", stdout=first)
    call_command("propose_plans", "--tenant", world.tenant.slug, "--no-progress", stdout=second)

    drafts = RevenuePlan.objects.filter(tenant=world.tenant, plan_status=PlanStatus.DRAFT)
    assert sorted(drafts.values_list("account_id", flat=True)) == sorted([world.account.id, done.id])
    assert set(drafts.values_list("created_by", flat=True)) == {"system:proposal_generator"}
    summary = f"2 draft plan(s) proposed, 0 refused, 2 eligible account(s) in {world.tenant.slug}"
    assert first.getvalue().strip() == summary
    assert second.getvalue().startswith("0 draft plan(s) proposed")
    assert not plans_of(too_far).exists()
    assert not plans_of(too_close).exists()
