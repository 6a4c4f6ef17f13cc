"""Proposal triggers behind the DecisionCostGate: no storms, every verdict recorded, budget and cooldown."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from orchestrator.autonomy import cost_gate, triggers
from orchestrator.autonomy.models import ProposalDecision, TenantAutonomy
from plans import services
from plans.models import PlanStatus, RevenuePlan
from tests.factories import AccountFactory, make_plan


def accounts(world, days_to_renewal):
    today = timezone.localdate()
    return [AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=today + timedelta(days=days))
            for days in days_to_renewal]


def verdicts(account) -> list[tuple[str, str]]:
    return list(ProposalDecision.objects.filter(account=account).order_by("id").values_list("decision", "reason"))


def drafts(account) -> int:
    return RevenuePlan.objects.filter(account=account, plan_status=PlanStatus.DRAFT).count()


@pytest.mark.django_db
def test_ten_runs_propose_once_per_eligible_account_and_record_every_other_verdict(world):
    TenantAutonomy.objects.create(tenant=world.tenant, max_proposals_per_day=3)
    world.account.renewal_date = None  # the fixture's account is not in the window
    world.account.save()
    eligible = accounts(world, [45, 60, 90, 110])
    covered = accounts(world, [70])[0]
    make_plan(account=covered, status=PlanStatus.ACTIVE, approved_by=world.approver)
    outside = accounts(world, [10, 200])
    now = timezone.now()
    # when
    results = [triggers.run_for_tenant(world.tenant.id, now=now) for _ in range(10)]
    # then: the three soonest renewals got one DRAFT each; the budget skipped the fourth, every run
    assert [drafts(account) for account in eligible] == [1, 1, 1, 0]
    assert results[0] == triggers.RunResult(allowed=3, skipped=2, proposed=3)
    assert all(result == triggers.RunResult(skipped=5) for result in results[1:])
    for account in eligible[:3]:
        assert verdicts(account) == [("ALLOW", "WORTH_PROPOSING")] + [("SKIP", "OPEN_PLAN_EXISTS")] * 9
        allowed = ProposalDecision.objects.get(account=account, decision="ALLOW")
        assert allowed.plan.created_by == "system:proposal_trigger"
    assert verdicts(eligible[3]) == [("SKIP", "BUDGET_EXHAUSTED")] * 10
    assert verdicts(covered) == [("SKIP", "OPEN_PLAN_EXISTS")] * 10
    assert not ProposalDecision.objects.filter(account__in=outside).exists()
    assert drafts(covered) == 0
    assert all(drafts(account) == 0 for account in outside)


@pytest.mark.django_db
def test_an_account_whose_draft_was_dropped_is_deferred_until_its_cooldown_ends(world):
    TenantAutonomy.objects.create(tenant=world.tenant, proposal_cooldown_days=7)
    [account] = accounts(world, [60])
    world.account.renewal_date = None
    world.account.save()
    now = timezone.now()
    triggers.run_for_tenant(world.tenant.id, now=now)
    draft = RevenuePlan.objects.get(account=account)
    services.plan_abort(plan_id=draft.id, user=world.seller, reason="not now")
    # when: the next runs, within the cooldown and after it
    triggers.run_for_tenant(world.tenant.id, now=now + timedelta(days=1))
    triggers.run_for_tenant(world.tenant.id, now=now + timedelta(days=8))
    # then
    assert verdicts(account) == [("ALLOW", "WORTH_PROPOSING"), ("DEFER", "COOLDOWN"), ("ALLOW", "WORTH_PROPOSING")]
    assert RevenuePlan.objects.filter(account=account).count() == 2


@pytest.mark.django_db
def test_a_failing_proposer_spends_its_budget_and_is_not_called_again_on_the_next_run(world, settings):
    settings.REVPLAN_PROPOSER = "llm"
    settings.REVPLAN_LLM = {**settings.REVPLAN_LLM, "base_url": "http://127.0.0.1:9/v1", "timeout_seconds": 1}
    [account] = accounts(world, [60])
    world.account.renewal_date = None
    world.account.save()
    result = triggers.run_for_tenant(world.tenant.id)
    assert result == triggers.RunResult(allowed=1, failed=1)
    allowed = ProposalDecision.objects.get(account=account)
    assert allowed.plan is None
    assert allowed.error.startswith("PROPOSER_UNAVAILABLE")
    assert triggers.run_for_tenant(world.tenant.id) == triggers.RunResult(deferred=1)
    assert not RevenuePlan.objects.filter(account=account).exists()


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_propose_once(world):
    TenantAutonomy.objects.create(tenant=world.tenant, max_proposals_per_day=2)
    eligible = accounts(world, [50, 51, 52])
    world.account.renewal_date = None
    world.account.save()
    barrier, errors = threading.Barrier(2), []

    def run():
        try:
            barrier.wait()
            triggers.run_for_tenant(world.tenant.id)
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert [drafts(account) for account in eligible] == [1, 1, 0]
    assert ProposalDecision.objects.filter(decision="ALLOW").count() == 2


@pytest.mark.parametrize(("facts", "decision", "reason"), [
    ({}, "ALLOW", "WORTH_PROPOSING"),
    ({"has_open_plan": True}, "SKIP", "OPEN_PLAN_EXISTS"),
    ({"last_allowed_at": "1 day ago"}, "DEFER", "COOLDOWN"),
    ({"last_allowed_at": "8 days ago"}, "ALLOW", "WORTH_PROPOSING"),
    ({"proposals_today": 5}, "SKIP", "BUDGET_EXHAUSTED"),
    ({"daily_budget": 0}, "SKIP", "BUDGET_EXHAUSTED"),
    ({"has_open_plan": True, "last_allowed_at": "1 day ago", "proposals_today": 5}, "SKIP", "OPEN_PLAN_EXISTS"),
    ({"last_allowed_at": "1 day ago", "proposals_today": 5}, "DEFER", "COOLDOWN"),
])
def test_the_cost_gate_table(facts, decision, reason):
    now = timezone.now()
    ago = {"1 day ago": now - timedelta(days=1), "8 days ago": now - timedelta(days=8)}
    base = {"now": now, "has_open_plan": False, "last_allowed_at": None, "cooldown_days": 7, "proposals_today": 0,
            "daily_budget": 5}
    base.update({key: ago.get(value, value) if isinstance(value, str) else value for key, value in facts.items()})
    verdict = cost_gate.decide(cost_gate.GateFacts(**base))
    assert (verdict.decision, verdict.reason) == (decision, reason)
    assert verdict == cost_gate.decide(cost_gate.GateFacts(**base))
