"""The conflict rule at approval (DESIGN §3.5): no queue. Approving a plan while the account has another
APPROVED or ACTIVE plan of the type is 409 CONFLICT_ACTIVE_PLAN_EXISTS naming it (ledgered); a PAUSED
plan's resume re-checks it. Two approvals racing for one account: one wins."""
import threading

import pytest
from django.db import connection

from orchestrator import engine
from plans import services
from plans.errors import Conflict
from plans.models import EventType, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan
from plans.policy import CONFLICT_ACTIVE_PLAN_EXISTS
from plans.proposals import renewal_defense_draft
from tests.conftest import build_world
from tests.factories import AccountFactory, make_plan

RACE_ROUNDS = 10


def propose(world, account=None) -> RevenuePlan:
    return services.plan_propose(account_id=(account or world.account).id, plan_type="RENEWAL_DEFENSE",
                                 draft=renewal_defense_draft(signal_types=set()), actor=world.seller)


def state_of(plan: RevenuePlan) -> tuple:
    return (RevenuePlan.objects.filter(pk=plan.pk).values().get(),
            list(PlanStep.objects.filter(plan=plan).order_by("sequence").values()))


@pytest.mark.parametrize("other_status", [PlanStatus.APPROVED, PlanStatus.ACTIVE])
def test_approval_is_refused_while_another_plan_of_the_type_is_approved_or_active(world, other_status):
    # given
    other = make_plan(account=world.account, status=other_status)
    plan = propose(world)
    before = state_of(plan)

    # when
    with pytest.raises(Conflict) as refused:
        services.plan_approve(plan_id=plan.id, user=world.approver)

    # then: 409 naming the other plan; the refusal is the only thing written
    assert refused.value.code == CONFLICT_ACTIVE_PLAN_EXISTS
    assert f"Plan {other.id} is already {other_status}" in refused.value.detail
    assert state_of(plan) == before
    (rejected,) = PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.POLICY_REJECTED)
    assert rejected.reason_code == CONFLICT_ACTIVE_PLAN_EXISTS
    assert rejected.data["attempted"] == "approve"
    assert str(other.id) in rejected.explanation


@pytest.mark.parametrize("other_status", [PlanStatus.DRAFT, PlanStatus.PAUSED, PlanStatus.COMPLETED,
                                          PlanStatus.ABORTED, PlanStatus.EXPIRED])
def test_approval_is_allowed_beside_a_plan_that_neither_waits_nor_runs(world, other_status):
    make_plan(account=world.account, status=other_status)
    plan = services.plan_approve(plan_id=propose(world).id, user=world.approver)
    assert plan.plan_status == PlanStatus.APPROVED


def test_another_accounts_plan_is_no_conflict(world):
    make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE)
    assert services.plan_approve(plan_id=propose(world).id, user=world.approver).plan_status == PlanStatus.APPROVED


def test_a_paused_plan_may_not_resume_while_another_is_approved(world):
    # given: a running plan a person paused, and a second plan approved meanwhile (a PAUSED one is no conflict)
    first = services.plan_approve(plan_id=propose(world).id, user=world.approver)
    engine.advance_plan(first.id)
    services.plan_pause(plan_id=first.id, user=world.seller, reason="customer asked for a break")
    second = services.plan_approve(plan_id=propose(world).id, user=world.approver)

    # when the first would resume
    with pytest.raises(Conflict) as refused:
        services.plan_resume(plan_id=first.id, user=world.seller)

    # then it is refused, naming the approved plan, and stays PAUSED
    assert refused.value.code == CONFLICT_ACTIVE_PLAN_EXISTS
    assert str(second.id) in refused.value.detail
    assert RevenuePlan.objects.get(pk=first.id).plan_status == PlanStatus.PAUSED
    rejected = PlanLedgerEntry.objects.filter(plan=first, event_type=EventType.POLICY_REJECTED).get()
    assert rejected.data["attempted"] == "resume"


def test_a_plan_approved_before_the_rule_still_waits_its_turn(world):
    """Plans already waiting APPROVED behind an ACTIVE one when the rule came in are not refused: the
    orchestrator's activation re-check (ACTIVE only) lets them start once the slot is free."""
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    waiting = make_plan(account=world.account, status=PlanStatus.APPROVED, next_run_at=None)
    engine.advance_plan(waiting.id)
    assert RevenuePlan.objects.get(pk=waiting.id).plan_status == PlanStatus.APPROVED
    services.plan_abort(plan_id=active.id, user=world.admin, reason="done with it")
    engine.advance_plan(waiting.id)
    assert RevenuePlan.objects.get(pk=waiting.id).plan_status == PlanStatus.ACTIVE


def _approve_in_thread(plan_id, user, barrier: threading.Barrier, outcomes: dict) -> None:
    try:
        connection.ensure_connection()
        barrier.wait(timeout=10)
        services.plan_approve(plan_id=plan_id, user=user)
        outcomes[plan_id] = "approved"
    except Conflict as refused:
        outcomes[plan_id] = refused.code
    except BaseException as error:  # the test asserts on whatever happened
        outcomes[plan_id] = error
    finally:
        connection.close()


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_two_racing_approvals_for_one_account_approve_one():
    world = build_world()
    for round_number in range(RACE_ROUNDS):
        first, second = propose(world), propose(world)
        barrier, outcomes = threading.Barrier(2), {}
        threads = [threading.Thread(target=_approve_in_thread, args=(plan.id, user, barrier, outcomes), daemon=True)
                   for plan, user in ((first, world.approver), (second, world.admin))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcomes.values()) == ["CONFLICT_ACTIVE_PLAN_EXISTS", "approved"], f"round {round_number}"
        assert RevenuePlan.objects.filter(account=world.account, plan_status=PlanStatus.APPROVED).count() == 1
        for plan in (first, second):
            services.plan_abort(plan_id=plan.id, user=world.admin, reason=f"race round {round_number} done")
