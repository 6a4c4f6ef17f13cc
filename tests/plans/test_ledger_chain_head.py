"""plans/ledger/chain.py: a transaction's second entry of a plan links to its first without reading the
chain, and never to an entry whose savepoint was rolled back."""
from contextlib import suppress

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from plans.ledger.chain import append
from plans.ledger.verify import verify_ledger
from plans.locking import lock_plan
from plans.models import EventType
from tests.conftest import build_world
from tests.factories import make_plan


def _append(plan, explanation: str):
    return append(tenant_id=plan.tenant_id, plan_id=plan.id, event_type=EventType.PLAN_EDITED, actor="system:test",
                  explanation=explanation)


def test_the_next_entry_in_the_same_transaction_is_linked_without_reading_the_chain(world):
    plan = make_plan(account=world.account)
    with transaction.atomic():
        lock_plan(plan.id)
        first = _append(plan, "first")
        with CaptureQueriesContext(connection) as queries:
            second = _append(plan, "second")
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["INSERT"]
    assert second.chain_seq == first.chain_seq + 1
    assert second.prev_hash == first.entry_hash
    assert verify_ledger(plan_id=plan.id).ok


def test_an_entry_rolled_back_with_its_savepoint_is_not_linked_to(world):
    plan = make_plan(account=world.account)
    with transaction.atomic():
        lock_plan(plan.id)
        first = _append(plan, "kept")
        with suppress(RuntimeError), transaction.atomic():
            _append(plan, "rolled back")
            raise RuntimeError("the savepoint rolls back")
        after = _append(plan, "after the rollback")
    assert after.chain_seq == first.chain_seq + 1
    assert after.prev_hash == first.entry_hash
    assert verify_ledger(plan_id=plan.id).ok


def test_an_entry_of_a_released_savepoint_is_linked_to(world):
    plan = make_plan(account=world.account)
    with transaction.atomic():
        lock_plan(plan.id)
        with transaction.atomic():
            inner = _append(plan, "in a savepoint that is released")
        after = _append(plan, "after it")
    assert after.chain_seq == inner.chain_seq + 1
    assert after.prev_hash == inner.entry_hash
    assert verify_ledger(plan_id=plan.id).ok


def test_one_atomic_block_used_twice_does_not_carry_a_rolled_back_head_over(transactional_db):
    # As a @transaction.atomic decorator does: the same Atomic object for a failed and a later transaction
    # (real transactions here, not savepoints of a test's).
    plan = make_plan(account=build_world().account)
    block = transaction.atomic()
    with suppress(RuntimeError), block:
        lock_plan(plan.id)
        rolled_back = _append(plan, "rolled back")
        raise RuntimeError("the transaction rolls back")
    with block:
        lock_plan(plan.id)
        after = _append(plan, "the next transaction")
    assert after.chain_seq == rolled_back.chain_seq  # the rolled-back entry's place, taken afresh
    assert verify_ledger(plan_id=plan.id).ok
