"""plans/ledger/chain.py held(): the plan chains' entries a block appends are linked at once and written in one
statement at its end (or before any statement that touches the ledger); an error out of the block writes none of
them; a remembered head that moved on, or a rolled-back savepoint's entry, never makes a broken chain."""
from contextlib import suppress

from django.db import connection, transaction
from django.db.models import OuterRef
from django.test.utils import CaptureQueriesContext

from plans.ledger import chain
from plans.ledger.chain import append, held
from plans.ledger.verify import verify_ledger
from plans.locking import lock_plan, lock_plans
from plans.models import EventType, PlanLedgerEntry, RevenuePlan
from tests.conftest import build_world
from tests.factories import make_plan

_LEDGER = PlanLedgerEntry._meta.db_table


def _append(plan, explanation: str):
    return append(tenant_id=plan.tenant_id, plan_id=plan.id, event_type=EventType.PLAN_EDITED, actor="system:test",
                  explanation=explanation)


def _ledger_statements(queries) -> list[str]:
    return [query["sql"].split()[0] for query in queries.captured_queries if _LEDGER in query["sql"]]


def _committed(plan, explanation: str):
    with transaction.atomic():
        lock_plan(plan.id)
        return _append(plan, explanation)


def test_a_blocks_entries_of_several_plans_are_written_in_one_statement_at_its_end(transactional_db):
    world = build_world()
    plans = [make_plan(account=world.account) for _ in range(3)]
    before = {plan.id: _committed(plan, "before") for plan in plans}
    with transaction.atomic():
        lock_plans([plan.id for plan in plans])
        with CaptureQueriesContext(connection) as queries, held():
            appended = [(_append(plan, "one"), _append(plan, "two")) for plan in plans]
            assert all(entry.pk is None for pair in appended for entry in pair)  # held, not yet written
    assert _ledger_statements(queries) == ["INSERT"]
    for plan, (one, two) in zip(plans, appended, strict=True):
        assert (one.chain_seq, one.prev_hash) == (before[plan.id].chain_seq + 1, before[plan.id].entry_hash)
        assert (two.chain_seq, two.prev_hash) == (one.chain_seq + 1, one.entry_hash)
        stored = list(PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq").values_list("pk", "entry_hash"))
        assert stored[-2:] == [(one.pk, one.entry_hash), (two.pk, two.entry_hash)]
        assert verify_ledger(plan_id=plan.id).ok
    assert chain._COMMITTED_HEADS[plans[0].id] == (appended[0][1].chain_seq, appended[0][1].entry_hash)


def test_a_read_of_the_ledger_in_the_block_sees_the_held_entries(world):
    plan = make_plan(account=world.account)
    with transaction.atomic():
        lock_plan(plan.id)
        with held():
            entry = _append(plan, "held")
            assert PlanLedgerEntry.objects.filter(plan=plan, explanation="held").count() == 1
            assert entry.pk is not None  # written before the read
            after = _append(plan, "after the read")
        assert (after.chain_seq, after.prev_hash) == (entry.chain_seq + 1, entry.entry_hash)
    assert verify_ledger(plan_id=plan.id).ok


def test_an_error_out_of_the_block_writes_none_of_its_entries_nor_lets_its_transaction_commit(transactional_db):
    plan = make_plan(account=build_world().account)
    first = _committed(plan, "first")
    with transaction.atomic():
        lock_plan(plan.id)
        RevenuePlan.objects.filter(pk=plan.id).update(objective="changed with the entries")
        with suppress(RuntimeError), held():
            _append(plan, "never written")
            raise RuntimeError("the block fails")
    assert list(PlanLedgerEntry.objects.filter(plan=plan).values_list("pk", flat=True)) == [first.pk]
    assert RevenuePlan.objects.get(pk=plan.id).objective != "changed with the entries"  # rolled back with them
    after = _committed(plan, "after")
    assert (after.chain_seq, after.prev_hash) == (first.chain_seq + 1, first.entry_hash)
    assert verify_ledger(plan_id=plan.id).ok


def test_an_entry_rolled_back_with_its_savepoint_is_not_written_nor_linked_to(world):
    plan = make_plan(account=world.account)
    with transaction.atomic():
        lock_plan(plan.id)
        with held():
            kept = _append(plan, "kept")
            with suppress(RuntimeError), transaction.atomic():
                _append(plan, "rolled back")
                raise RuntimeError("the savepoint rolls back")
            after = _append(plan, "after the rollback")
    assert not PlanLedgerEntry.objects.filter(plan=plan, explanation="rolled back").exists()
    assert (after.chain_seq, after.prev_hash) == (kept.chain_seq + 1, kept.entry_hash)
    assert verify_ledger(plan_id=plan.id).ok


def test_a_plan_whose_remembered_head_moved_on_is_linked_again_and_the_others_written_at_once(transactional_db):
    world = build_world()
    moved, still = make_plan(account=world.account), make_plan(account=world.account)
    _committed(moved, "ours")
    still_head = _committed(still, "ours")
    remembered = chain._COMMITTED_HEADS[moved.id]
    theirs = _committed(moved, "another process's")  # as if written elsewhere: our memory is older
    chain._COMMITTED_HEADS[moved.id] = remembered
    with transaction.atomic():
        lock_plans([moved.id, still.id])
        with CaptureQueriesContext(connection) as queries, held():
            moved_entries = [_append(moved, "one"), _append(moved, "two")]
            still_entry = _append(still, "one")
    assert _ledger_statements(queries) == ["INSERT", "SELECT", "INSERT"]  # refused, head read, linked again
    assert [(entry.chain_seq, entry.prev_hash) for entry in moved_entries] == [
        (theirs.chain_seq + 1, theirs.entry_hash), (theirs.chain_seq + 2, moved_entries[0].entry_hash)]
    assert (still_entry.chain_seq, still_entry.prev_hash) == (still_head.chain_seq + 1, still_head.entry_hash)
    assert chain._COMMITTED_HEADS[moved.id] == (moved_entries[1].chain_seq, moved_entries[1].entry_hash)
    assert PlanLedgerEntry.objects.filter(plan=moved).count() == moved_entries[1].chain_seq
    assert verify_ledger(plan_id=moved.id).ok
    assert verify_ledger(plan_id=still.id).ok


def test_a_chain_noted_empty_that_got_an_entry_meanwhile_is_linked_after_it(transactional_db):
    plan = make_plan(account=build_world().account)
    with transaction.atomic():
        chain.note_chain_heads(lock_plans([plan.id], also=chain.chain_head_columns(OuterRef("pk"))))
    theirs = _committed(plan, "another process's first")
    chain._COMMITTED_HEADS[plan.id] = (0, chain.GENESIS_HASH)  # what the lock's read saw
    with transaction.atomic():
        lock_plan(plan.id)
        with held():
            ours = _append(plan, "ours")
    assert (ours.chain_seq, ours.prev_hash) == (theirs.chain_seq + 1, theirs.entry_hash)
    assert verify_ledger(plan_id=plan.id).ok


def test_a_nested_block_leaves_the_writing_to_the_outer_one(world):
    plan = make_plan(account=world.account)
    with transaction.atomic():
        lock_plan(plan.id)
        with held():
            with held():
                inner = _append(plan, "inner")
            assert inner.pk is None  # still held by the outer block
            outer = _append(plan, "outer")
        assert (outer.chain_seq, outer.prev_hash) == (inner.chain_seq + 1, inner.entry_hash)
        assert inner.pk is not None
        assert outer.pk is not None
    assert verify_ledger(plan_id=plan.id).ok
