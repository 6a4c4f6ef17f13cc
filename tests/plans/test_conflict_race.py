"""The conflict invariant (DESIGN §3.5) under a real race: two connections activate at the same moment,
each the way the orchestrator does (orchestrator.engine.advance_plan)."""
import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator import engine
from plans import services
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan
from plans.policy import CONFLICT_ACTIVE_PLAN_EXISTS
from tests.conftest import build_world
from tests.factories import make_plan

ROUNDS = 50
BARRIER_TIMEOUT_SECONDS = 10
JOIN_TIMEOUT_SECONDS = 30


def activate_in_thread(plan_id, barrier: threading.Barrier, outcomes: dict) -> None:
    """Runs on its own thread, so on its own database connection."""
    try:
        connection.ensure_connection()  # connect before the barrier, so both calls start together
        barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
        engine.advance_plan(plan_id)
        activated = RevenuePlan.objects.get(pk=plan_id).plan_status == PlanStatus.ACTIVE
        outcomes[plan_id] = "activated" if activated else "refused"
    except BaseException as error:  # the test asserts on whatever happened
        outcomes[plan_id] = error
    finally:
        connection.close()


def active_plan_ids(account) -> list:
    return list(RevenuePlan.objects.filter(account=account, plan_status=PlanStatus.ACTIVE).values_list("id", flat=True))


def race_activations(first_id, second_id) -> dict:
    barrier = threading.Barrier(2)
    outcomes: dict = {}
    threads = [
        threading.Thread(target=activate_in_thread, args=(plan_id, barrier, outcomes), daemon=True)
        for plan_id in (first_id, second_id)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "an activation hung"
    return outcomes


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_only_one_of_two_racing_activations_wins():
    world = build_world()
    started = time.monotonic()
    winners_by_position = [0, 0]

    for round_number in range(ROUNDS):
        first = make_plan(account=world.account, status=PlanStatus.APPROVED)
        second = make_plan(account=world.account, status=PlanStatus.APPROVED)

        outcomes = race_activations(first.id, second.id)

        winners = [plan_id for plan_id, outcome in outcomes.items() if outcome == "activated"]
        losers = [plan_id for plan_id, outcome in outcomes.items() if outcome == "refused"]
        # neither advance raised: a refused activation is ledgered and looked at again later
        assert (len(winners), len(losers)) == (1, 1), f"round {round_number}: {outcomes}"
        (winner_id,), (loser_id,) = winners, losers
        winners_by_position[0 if winner_id == first.id else 1] += 1

        assert active_plan_ids(world.account) == [winner_id]
        loser = RevenuePlan.objects.get(pk=loser_id)
        assert loser.plan_status == PlanStatus.APPROVED
        assert loser.next_run_at > timezone.now()  # the orchestrator looks again later
        assert PlanLedgerEntry.objects.filter(plan_id=winner_id, event_type=EventType.PLAN_ACTIVATED).count() == 1
        blocked = PlanLedgerEntry.objects.filter(plan_id=loser_id, event_type=EventType.ACTIVATION_BLOCKED).get()
        assert blocked.reason_code == CONFLICT_ACTIVE_PLAN_EXISTS
        assert str(winner_id) in blocked.explanation

        # Each round starts with no ACTIVE plan.
        services.plan_abort(plan_id=winner_id, user=world.admin, reason=f"race round {round_number} done")
        services.plan_abort(plan_id=loser_id, user=world.admin, reason=f"race round {round_number} lost")

    elapsed = time.monotonic() - started
    print(f"{ROUNDS} activation races in {elapsed:.2f}s; winners by start position {winners_by_position}")
    assert active_plan_ids(world.account) == []
    assert RevenuePlan.objects.filter(account=world.account, plan_status=PlanStatus.ABORTED).count() == 2 * ROUNDS


def test_the_partial_unique_index_refuses_a_second_active_plan(world):
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    approved = make_plan(account=world.account, status=PlanStatus.APPROVED)

    def force_active():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE plans_revenueplan SET plan_status = 'ACTIVE' WHERE id = %s", [approved.id])

    with pytest.raises(IntegrityError, match="one_active_plan_per_account_and_type"), transaction.atomic():
        force_active()

    approved.refresh_from_db()
    assert approved.plan_status == PlanStatus.APPROVED
    assert active_plan_ids(world.account) == [active.id]
    # Other plan types and other statuses are not constrained.
    other_type = make_plan(account=world.account, status=PlanStatus.APPROVED, plan_type="OTHER_TYPE")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE plans_revenueplan SET plan_status = 'ACTIVE' WHERE id = %s", [other_type.id])
    other_type.refresh_from_db()
    assert other_type.plan_status == PlanStatus.ACTIVE


def test_a_move_into_active_past_the_gate_is_a_clean_conflict(world):
    from plans.errors import Conflict
    from plans.lifecycle import Move
    from plans.services.moves import plan_transition

    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    approved = make_plan(account=world.account, status=PlanStatus.APPROVED)
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries, pytest.raises(Conflict) as refused:
            plan_transition(approved, Move.ACTIVATE, actor="system:tests")  # the gate not asked
        assert refused.value.code == CONFLICT_ACTIVE_PLAN_EXISTS
        assert [query["sql"].split()[0] for query in queries] == ["UPDATE"]  # one statement, no savepoint
        # nothing written, and the transaction goes on (no savepoint needed for it)
        assert RevenuePlan.objects.get(pk=approved.pk).plan_status == PlanStatus.APPROVED
    assert active_plan_ids(world.account) == [active.id]
    assert not PlanLedgerEntry.objects.filter(plan=approved, event_type=EventType.PLAN_ACTIVATED).exists()
