"""plans/ledger/chain.py: a transaction's second entry of a plan links to its first without reading the
chain, and never to an entry whose savepoint was rolled back; the next transaction's first entry links to the
head this process committed without reading it, unless someone else appended since, or that head is gone."""
from contextlib import suppress

import pytest
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from plans.ledger import chain
from plans.ledger.chain import append
from plans.ledger.verify import verify_ledger
from plans.locking import lock_plan
from plans.models import EventType, PlanLedgerEntry
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


def _in_a_transaction(plan, explanation: str):
    with transaction.atomic():
        lock_plan(plan.id)
        with CaptureQueriesContext(connection) as queries:
            entry = _append(plan, explanation)
    return entry, [query["sql"].split()[0] for query in queries.captured_queries]


def test_the_next_transactions_first_entry_links_to_the_committed_head_without_reading_it(transactional_db):
    plan = make_plan(account=build_world().account)
    first, _ = _in_a_transaction(plan, "first")
    second, statements = _in_a_transaction(plan, "the next transaction")
    assert statements == ["INSERT"]  # no read of the chain's head
    assert (second.chain_seq, second.prev_hash) == (first.chain_seq + 1, first.entry_hash)
    assert PlanLedgerEntry.objects.get(pk=second.pk).entry_hash == second.entry_hash
    assert verify_ledger(plan_id=plan.id).ok


def test_an_entry_another_process_appended_since_is_linked_to(transactional_db):
    plan = make_plan(account=build_world().account)
    ours, _ = _in_a_transaction(plan, "ours")
    remembered = chain._COMMITTED_HEADS[plan.id]
    assert remembered == (ours.chain_seq, ours.entry_hash)
    theirs, _ = _in_a_transaction(plan, "another process's")  # as if written elsewhere: our memory is older
    chain._COMMITTED_HEADS[plan.id] = remembered
    after, statements = _in_a_transaction(plan, "ours again")
    assert statements == ["INSERT", "SELECT", "INSERT"]  # the remembered head is not the last: read, then link
    assert (after.chain_seq, after.prev_hash) == (theirs.chain_seq + 1, theirs.entry_hash)
    assert PlanLedgerEntry.objects.filter(plan=plan).count() == after.chain_seq
    assert verify_ledger(plan_id=plan.id).ok


def test_a_remembered_head_the_chain_does_not_have_is_not_linked_to(transactional_db):
    # E.g. a database restored to an earlier point while this process ran: the head it remembers is gone.
    plan = make_plan(account=build_world().account)
    first, _ = _in_a_transaction(plan, "first")
    chain._COMMITTED_HEADS[plan.id] = (first.chain_seq + 5, "f" * 64)
    after, _ = _in_a_transaction(plan, "after")
    assert (after.chain_seq, after.prev_hash) == (first.chain_seq + 1, first.entry_hash)
    assert verify_ledger(plan_id=plan.id).ok


def test_a_rolled_back_transactions_entry_is_not_remembered(transactional_db):
    plan = make_plan(account=build_world().account)
    first, _ = _in_a_transaction(plan, "first")
    with suppress(RuntimeError), transaction.atomic():
        lock_plan(plan.id)
        _append(plan, "rolled back")
        raise RuntimeError("the transaction rolls back")
    assert chain._COMMITTED_HEADS[plan.id] == (first.chain_seq, first.entry_hash)
    after, statements = _in_a_transaction(plan, "after")
    assert statements == ["INSERT"]
    assert (after.chain_seq, after.prev_hash) == (first.chain_seq + 1, first.entry_hash)
    assert verify_ledger(plan_id=plan.id).ok


def test_a_value_too_long_for_its_column_is_refused_not_cut_short(transactional_db):
    # The committed-head insert casts each value to its column's type: never to varchar(n), which would store a
    # shortened actor under a hash of the whole one (a chain that no longer verifies).
    plan = make_plan(account=build_world().account)
    _in_a_transaction(plan, "first")

    def append_too_long_an_actor():
        with transaction.atomic():
            lock_plan(plan.id)
            append(tenant_id=plan.tenant_id, plan_id=plan.id, event_type=EventType.PLAN_EDITED, actor="x" * 101)

    with pytest.raises(DataError):
        append_too_long_an_actor()
    assert verify_ledger(plan_id=plan.id).ok
