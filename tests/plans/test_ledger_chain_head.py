"""plans/ledger/chain.py: a transaction's second entry of a plan links to its first without reading the
chain, and never to an entry whose savepoint was rolled back; the next transaction's first entry links to the
head this process committed (or a batch's lock read) without reading it, unless someone else appended since, or
that head is gone."""
from contextlib import suppress

import pytest
from django.db import DataError, connection, transaction
from django.db.models import OuterRef
from django.test.utils import CaptureQueriesContext

from plans.ledger import chain
from plans.ledger.chain import append
from plans.ledger.verify import verify_ledger
from plans.locking import lock_plan, lock_plans
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


def _lock_noting_heads(plans):
    locked = lock_plans([plan.id for plan in plans], also=chain.chain_head_columns(OuterRef("pk")))
    chain.note_chain_heads(locked)
    return locked


def test_heads_read_with_a_batchs_locks_are_linked_to_without_reading_the_chains(transactional_db):
    plans = [make_plan(account=build_world().account) for _ in range(3)]
    heads = {plan.id: _in_a_transaction(plan, "made elsewhere")[0] for plan in plans}
    chain._COMMITTED_HEADS.clear()  # as in a worker that never wrote to these chains
    with transaction.atomic():
        locked = _lock_noting_heads(plans)
        assert not any(hasattr(plan, "ledger_head_seq") for plan in locked)  # taken off the plans
        with CaptureQueriesContext(connection) as queries:
            appended = {plan.id: _append(plan, "the batch's") for plan in plans}
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["INSERT"] * 3
    for plan in plans:
        assert (appended[plan.id].chain_seq, appended[plan.id].prev_hash) == (
            heads[plan.id].chain_seq + 1, heads[plan.id].entry_hash)
        assert verify_ledger(plan_id=plan.id).ok


def test_a_head_read_before_its_lock_was_granted_is_not_linked_to_once_it_moved_on(transactional_db):
    # The lock's statement waited while the holder appended: what its snapshot saw is no longer the head.
    plan = make_plan(account=build_world().account)
    _in_a_transaction(plan, "first")
    with transaction.atomic():
        _lock_noting_heads([plan])
        stale = chain._COMMITTED_HEADS[plan.id]
        newer = _append(plan, "the holder's, committed while we waited")
    chain._COMMITTED_HEADS[plan.id] = stale
    after, statements = _in_a_transaction(plan, "ours")
    assert statements == ["INSERT", "SELECT", "INSERT"]  # tried, refused, read, linked
    assert (after.chain_seq, after.prev_hash) == (newer.chain_seq + 1, newer.entry_hash)
    assert verify_ledger(plan_id=plan.id).ok




def test_a_chain_with_no_entries_yet_is_noted_as_empty_and_its_first_entry_linked_without_a_read(transactional_db):
    plan = make_plan(account=build_world().account)
    assert not PlanLedgerEntry.objects.filter(plan=plan).exists()  # made by the factory, not by a service
    with transaction.atomic():
        _lock_noting_heads([plan])
        with CaptureQueriesContext(connection) as queries:
            first = _append(plan, "the chain's first")
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["INSERT"]
    assert (first.chain_seq, first.prev_hash) == (1, chain.GENESIS_HASH)
    assert verify_ledger(plan_id=plan.id).ok


def test_a_chain_noted_empty_that_got_an_entry_meanwhile_is_read(transactional_db):
    plan = make_plan(account=build_world().account)
    with transaction.atomic():
        _lock_noting_heads([plan])
    theirs, _ = _in_a_transaction(plan, "another process's first")
    chain._COMMITTED_HEADS[plan.id] = (0, chain.GENESIS_HASH)  # what the lock's read saw
    after, statements = _in_a_transaction(plan, "ours")
    assert statements == ["INSERT", "SELECT", "INSERT"]  # its first position is taken: read, then link
    assert (after.chain_seq, after.prev_hash) == (theirs.chain_seq + 1, theirs.entry_hash)
    assert verify_ledger(plan_id=plan.id).ok
