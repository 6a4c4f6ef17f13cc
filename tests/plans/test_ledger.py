"""The append-only ledger (DESIGN §6): immutability at every layer, hash chains, verification, digests, "why"."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from orchestrator import engine
from plans import ledger, services
from plans.errors import LedgerImmutable
from plans.locking import lock_account_then_plan
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan
from plans.policy import CONFLICT_ACTIVE_PLAN_EXISTS, PRECONDITION_FAILED
from plans.proposals import renewal_defense_draft
from plans.schemas import PlanDraftInput, StepInput
from plans.tasks import ledger_digest_all_tenants
from plans.why import PlanWhy, plan_why
from tests.factories import AccountFactory, SignalFactory, make_plan

INSUFFICIENT_PRIVILEGE = "42501"
DISABLE_ROW_TRIGGER = "ALTER TABLE plans_planledgerentry DISABLE TRIGGER ledger_refuse_update_delete"


# --- helpers ----------------------------------------------------------------------------------


def propose(world, *, account=None, **kwargs) -> RevenuePlan:
    return services.plan_propose(
        account_id=(account or world.account).id,
        plan_type="RENEWAL_DEFENSE",
        draft=renewal_defense_draft(signal_types=set()),
        actor=world.seller,
        **kwargs,
    )


def activate(plan_id) -> None:
    """As orchestrator.engine activates, without starting a step: the account's row lock, then the plan's."""
    with transaction.atomic():
        plan = lock_account_then_plan(plan_id)
        assert services.plan_activate_locked(plan, steps=list(plan.steps.all()), component="orchestrator").can_activate


def plan_with_history(world, *, account=None) -> RevenuePlan:
    """A plan whose chain holds five entries: created, approved, activated, paused, its PERSON layer added."""
    plan = propose(world, account=account)
    services.plan_approve(plan_id=plan.id, user=world.approver)
    activate(plan.id)
    return services.plan_pause(plan_id=plan.id, user=world.seller, reason="customer on holiday")


def plan_chain(plan_id) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(plan_id=plan_id).order_by("chain_seq"))


def tenant_chain(tenant_id) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(tenant_id=tenant_id, plan__isnull=True).order_by("chain_seq"))


def stored_row(entry_id) -> dict:
    return PlanLedgerEntry.objects.filter(pk=entry_id).values().get()


def all_rows() -> list[dict]:
    return list(PlanLedgerEntry.objects.order_by("pk").values())


def check_deferred_constraints_now() -> None:
    # The test's inserts leave deferred foreign-key checks pending in the one test transaction, and
    # PostgreSQL refuses TRUNCATE and ALTER TABLE while any are pending (55006). Run them now, as a
    # commit would have, so the statement under test is the one that is judged.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def execute_in_savepoint(sql: str, params=()) -> None:
    """Raw SQL in a savepoint, so a refusal leaves the test transaction usable."""
    check_deferred_constraints_now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def disable_row_trigger() -> None:
    # Only the table owner can do this; the test database's owner is. ALTER TABLE is transactional
    # in PostgreSQL, so the test transaction's rollback switches the trigger back on.
    check_deferred_constraints_now()
    with connection.cursor() as cursor:
        cursor.execute(DISABLE_ROW_TRIGGER)


def tamper(sql: str, params=()) -> None:
    disable_row_trigger()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def assert_chain_is_sound(entries: list[PlanLedgerEntry]) -> None:
    assert [entry.chain_seq for entry in entries] == list(range(1, len(entries) + 1))
    expected_prev = ledger.GENESIS_HASH
    for entry in entries:
        assert entry.prev_hash == expected_prev
        assert entry.entry_hash == ledger.compute_hash(entry.prev_hash, entry)
        expected_prev = entry.entry_hash


def verify_command(**options) -> str:
    out = StringIO()
    call_command("verify_ledger", stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def in_transaction(function, *args, **kwargs):
    with transaction.atomic():
        return function(*args, **kwargs)


# --- immutability: the model and its querysets ----------------------------------------------


def test_saving_an_existing_entry_is_refused(world):
    entry = plan_chain(propose(world).id)[0]
    before = stored_row(entry.pk)

    entry.explanation = "rewritten history"
    with pytest.raises(LedgerImmutable):
        entry.save()
    with pytest.raises(LedgerImmutable):
        entry.save(update_fields=["explanation"])
    with pytest.raises(LedgerImmutable):
        entry.save(force_insert=True)

    assert stored_row(entry.pk) == before


def test_deleting_an_entry_through_the_model_is_refused(world):
    entry = plan_chain(propose(world).id)[0]
    before = stored_row(entry.pk)

    with pytest.raises(LedgerImmutable):
        entry.delete()

    assert stored_row(entry.pk) == before


def test_queryset_update_is_refused(world):
    plan = plan_with_history(world)
    before = all_rows()

    with pytest.raises(LedgerImmutable):
        PlanLedgerEntry.objects.filter(plan=plan).update(explanation="rewritten")
    with pytest.raises(LedgerImmutable):
        plan.ledger.all().update(reason_code="REWRITTEN")
    with pytest.raises(LedgerImmutable):
        PlanLedgerEntry.objects.update_or_create(pk=before[0]["id"], defaults={"explanation": "rewritten"})

    assert all_rows() == before


def test_queryset_delete_is_refused(world):
    plan = plan_with_history(world)
    before = all_rows()

    with pytest.raises(LedgerImmutable):
        PlanLedgerEntry.objects.filter(plan=plan).delete()
    with pytest.raises(LedgerImmutable):
        plan.ledger.all().delete()

    assert all_rows() == before


def test_bulk_update_is_refused(world):
    entries = plan_chain(plan_with_history(world).id)
    before = all_rows()
    for entry in entries:
        entry.explanation = "rewritten"

    with pytest.raises(LedgerImmutable):
        PlanLedgerEntry.objects.bulk_update(entries, ["explanation"])

    assert all_rows() == before


def test_bulk_create_and_unhashed_create_are_refused(world):
    head = plan_chain(propose(world).id)[-1]
    before = all_rows()

    def forged(seq: int) -> PlanLedgerEntry:
        return PlanLedgerEntry(
            tenant_id=head.tenant_id, plan_id=head.plan_id, event_type=EventType.PLAN_EDITED, actor="user:0",
            occurred_at=timezone.now(), chain_seq=seq, prev_hash=head.entry_hash, entry_hash="f" * 64,
        )

    with pytest.raises(LedgerImmutable):
        PlanLedgerEntry.objects.bulk_create([forged(2), forged(3)])
    with pytest.raises(LedgerImmutable):
        PlanLedgerEntry.objects.create(
            tenant_id=head.tenant_id, plan_id=head.plan_id, event_type=EventType.PLAN_EDITED, actor="user:0",
            occurred_at=timezone.now(), chain_seq=2, prev_hash=head.entry_hash,
        )

    assert all_rows() == before


def test_orm_paths_that_skip_the_model_checks_still_hit_the_trigger(world):
    """The base manager is a plain Manager, and a fresh instance with an old pk saves as an UPDATE."""
    entry = plan_chain(propose(world).id)[0]
    before = stored_row(entry.pk)

    with pytest.raises(DatabaseError) as update_error:
        in_transaction(PlanLedgerEntry._base_manager.filter(pk=entry.pk).update, explanation="rewritten")
    impostor = PlanLedgerEntry(**{**before, "explanation": "rewritten"})
    with pytest.raises(DatabaseError) as save_error:
        in_transaction(impostor.save)

    assert update_error.value.__cause__.sqlstate == INSUFFICIENT_PRIVILEGE
    assert save_error.value.__cause__.sqlstate == INSUFFICIENT_PRIVILEGE
    assert stored_row(entry.pk) == before


# --- immutability: the trigger refuses raw SQL -------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "needs_id"),
    [
        ("UPDATE plans_planledgerentry SET explanation = 'rewritten' WHERE id = %s", True),
        ("UPDATE plans_planledgerentry SET data = '{}'::jsonb, entry_hash = repeat('0', 64) WHERE id = %s", True),
        ("DELETE FROM plans_planledgerentry WHERE id = %s", True),
        ("DELETE FROM plans_planledgerentry", False),
        ("TRUNCATE plans_planledgerentry", False),
        ("TRUNCATE plans_planledgerentry CASCADE", False),
    ],
    ids=["update-explanation", "update-data-and-hash", "delete-one", "delete-all", "truncate", "truncate-cascade"],
)
def test_raw_sql_cannot_change_or_remove_entries(world, statement, needs_id):
    plan = plan_with_history(world)
    target = plan_chain(plan.id)[1]
    before = all_rows()

    with pytest.raises(DatabaseError) as error:
        execute_in_savepoint(statement, [target.pk] if needs_id else [])

    assert error.value.__cause__.sqlstate == INSUFFICIENT_PRIVILEGE
    assert "append-only" in str(error.value)
    assert all_rows() == before
    assert_chain_is_sound(plan_chain(plan.id))


def test_deleting_a_plan_with_ledger_entries_is_refused(world):
    plan = plan_with_history(world)
    entries_before = all_rows()

    with pytest.raises(ProtectedError):
        RevenuePlan.objects.get(pk=plan.id).delete()
    with pytest.raises(ProtectedError):
        RevenuePlan.objects.filter(pk=plan.id).delete()

    assert RevenuePlan.objects.filter(pk=plan.id).exists()
    assert plan.steps.count() == 2
    assert all_rows() == entries_before


def test_deleting_a_plan_with_ledger_entries_in_raw_sql_is_refused(world):
    plan = plan_with_history(world)
    entries_before = all_rows()

    def delete_plan_row():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM plans_planstep WHERE plan_id = %s", [plan.id])
            cursor.execute("DELETE FROM plans_revenueplan WHERE id = %s", [plan.id])
            # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: check now, not at a commit
            # the test transaction never reaches.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    with pytest.raises(IntegrityError) as error:
        in_transaction(delete_plan_row)

    assert "plans_planledgerentry" in str(error.value)
    assert RevenuePlan.objects.filter(pk=plan.id).exists()
    assert plan.steps.count() == 2
    assert all_rows() == entries_before


# --- chains --------------------------------------------------------------------------------------


def test_service_appends_form_one_linked_chain_per_plan(world):
    plan = plan_with_history(world)
    services.plan_resume(plan_id=plan.id, user=world.seller)
    services.plan_abort(plan_id=plan.id, user=world.admin, reason="deal lost")

    entries = plan_chain(plan.id)

    assert [entry.event_type for entry in entries] == [
        EventType.PLAN_CREATED, EventType.PLAN_APPROVED, EventType.PLAN_ACTIVATED,
        EventType.PLAN_PAUSED, EventType.PAUSE_LAYER_ADDED, EventType.PAUSE_LAYER_LIFTED, EventType.PLAN_RESUMED,
        # the abort closes the plan's two waiting steps
        EventType.PLAN_ABORTED, EventType.STEP_CLOSED, EventType.STEP_CLOSED,
    ]
    assert_chain_is_sound(entries)
    assert entries[0].prev_hash == ledger.GENESIS_HASH
    assert len({entry.entry_hash for entry in entries}) == len(entries)
    assert {entry.tenant_id for entry in entries} == {world.tenant.id}


def test_two_plans_have_independent_chains(world):
    second_account = AccountFactory(tenant=world.tenant, owner=world.seller)
    first = propose(world)
    second = propose(world, account=second_account)
    # Interleave the two plans' appends.
    services.plan_approve(plan_id=first.id, user=world.approver)
    services.plan_approve(plan_id=second.id, user=world.approver)
    activate(second.id)
    activate(first.id)
    services.plan_abort(plan_id=second.id, user=world.seller, reason="account churned")

    first_chain, second_chain = plan_chain(first.id), plan_chain(second.id)

    assert len(first_chain) == 3
    assert len(second_chain) == 4 + 2  # created, approved, activated, aborted; its two waiting steps closed
    assert_chain_is_sound(first_chain)
    assert_chain_is_sound(second_chain)
    assert second_chain[0].prev_hash == ledger.GENESIS_HASH
    assert tenant_chain(world.tenant.id) == []


def test_tenant_wide_entries_go_to_the_tenant_chain(world, other_world):
    active_plan = propose(world)
    services.plan_approve(plan_id=active_plan.id, user=world.approver)
    activate(active_plan.id)
    draft_plan = propose(world)
    plan_entries_before = PlanLedgerEntry.objects.filter(plan__isnull=False).count()

    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident 42")
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="still on")
    services.kill_switch_set(tenant_id=other_world.tenant.id, user=other_world.admin, engaged=True, reason="drill")
    services.account_transfer(account_id=world.account.id, new_owner_id=world.approver.pk, user=world.admin,
                              reason="tests: a new owner")
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="incident over")

    chain = tenant_chain(world.tenant.id)
    assert [(entry.event_type, entry.reason_code) for entry in chain] == [
        (EventType.KILL_SWITCH_FLIPPED, "KILL_SWITCH_ENGAGED"),  # the second "engage" was no flip
        (EventType.ACCOUNT_OWNER_CHANGED, "OWNERSHIP_CHANGED"),
        (EventType.KILL_SWITCH_FLIPPED, "KILL_SWITCH_RELEASED"),
    ]
    assert all(entry.plan_id is None for entry in chain)
    assert_chain_is_sound(chain)
    assert chain[1].data["plan_ids"] == sorted(str(plan_id) for plan_id in (active_plan.id, draft_plan.id))
    other_chain = tenant_chain(other_world.tenant.id)
    assert [entry.event_type for entry in other_chain] == [EventType.KILL_SWITCH_FLIPPED]
    assert_chain_is_sound(other_chain)
    # The transfer's per-plan effects went to the plans' own chains: both changed hands, and the running
    # one is held for a reapproval (the owner is one of its approval's facts).
    assert PlanLedgerEntry.objects.filter(plan__isnull=False).count() == plan_entries_before + 4
    assert [entry.event_type for entry in plan_chain(active_plan.id)[-3:]] == [
        EventType.PLAN_OWNER_CHANGED, EventType.PLAN_PAUSED, EventType.PAUSE_LAYER_ADDED]
    assert plan_chain(draft_plan.id)[-1].event_type == EventType.PLAN_OWNER_CHANGED
    assert_chain_is_sound(plan_chain(active_plan.id))
    assert_chain_is_sound(plan_chain(draft_plan.id))


def test_appending_outside_a_transaction_is_refused(world, monkeypatch):
    plan = propose(world)
    count_before = PlanLedgerEntry.objects.count()
    # Pretend the caller opened no transaction (the test's own transaction would otherwise hide it).
    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS], "in_atomic_block", False)

    with pytest.raises(RuntimeError, match="inside the transaction"):
        ledger.plan_edited(plan, actor="user:1", changed_fields=["steps"])

    monkeypatch.undo()
    assert PlanLedgerEntry.objects.count() == count_before


# --- verification ----------------------------------------------------------------------------


def test_a_clean_ledger_verifies(world, other_world):
    plan_with_history(world)
    plan_with_history(other_world)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident")
    in_transaction(ledger.tenant_digest, world.tenant.id, actor="system:tests")

    report = ledger.verify_ledger()

    assert report.ok
    assert report.broken == []
    assert report.chains == 3  # two plan chains, one tenant chain
    assert report.entries == 5 + 5 + 2
    assert verify_command() == "OK: 3 chain(s), 12 entries verified\n"


def test_numbers_in_entry_data_hash_as_postgresql_returns_them(world):
    """jsonb prints 1e+20 as 100000000000000000000; a clean entry must not look tampered with."""
    parameters = {"deal_value": 2.5e16, "seats": 1e20, "churn_risk": 1e-05, "discount": 0.1, "ratio": 2.0}
    draft = PlanDraftInput(steps=[
        StepInput(action_type="REQUEST_RENEWAL_MEETING", parameters=parameters),
        StepInput(action_type="PREP_RENEWAL_BRIEF"),
    ])
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE", draft=draft,
                                 actor=world.seller, inputs_summary={"arr": 3.2e17})
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="limit 1e+30")

    stored = plan_chain(plan.id)[0]
    assert stored.data["inputs"] == {"arr": 320000000000000000}
    assert stored.data["plan"]["steps"][0]["parameters"]["seats"] == 10**20
    assert ledger.verify_ledger().ok
    assert_chain_is_sound(plan_chain(plan.id))


def test_a_changed_explanation_is_named(world):
    plan = plan_with_history(world)
    middle = plan_chain(plan.id)[1]

    tamper("UPDATE plans_planledgerentry SET explanation = 'Nobody approved this.' WHERE id = %s", [middle.pk])
    report = ledger.verify_ledger()

    assert not report.ok
    assert len(report.broken) == 1
    assert report.broken[0].startswith(f"entry {middle.pk} (plan {plan.id}, position 2)")
    assert "entry_hash does not match" in report.broken[0]
    with pytest.raises(CommandError, match=rf"entry {middle.pk} \(plan {plan.id}, position 2\)"):
        verify_command()


def test_changed_data_is_named(world):
    plan = plan_with_history(world)
    middle = plan_chain(plan.id)[2]

    tamper(
        "UPDATE plans_planledgerentry SET data = jsonb_set(data, '{facts}', '{\"forged\": true}') WHERE id = %s",
        [middle.pk],
    )

    report = ledger.verify_ledger()
    assert [problem.split(":")[0] for problem in report.broken] == [f"entry {middle.pk} (plan {plan.id}, position 3)"]
    with pytest.raises(CommandError, match=rf"entry {middle.pk} "):
        verify_command()


def test_a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link(world):
    plan = plan_with_history(world)
    entries = plan_chain(plan.id)
    forged = entries[1]
    forged.explanation = "Approved by the CEO."
    forged_hash = ledger.compute_hash(forged.prev_hash, forged)

    tamper(
        "UPDATE plans_planledgerentry SET explanation = %s, entry_hash = %s WHERE id = %s",
        [forged.explanation, forged_hash, forged.pk],
    )

    report = ledger.verify_ledger()
    assert len(report.broken) == 1
    assert report.broken[0].startswith(f"entry {entries[2].pk} (plan {plan.id}, position 3)")
    assert "prev_hash does not match" in report.broken[0]


def test_a_deleted_middle_entry_is_reported_missing(world):
    plan = plan_with_history(world)
    entries = plan_chain(plan.id)

    tamper("DELETE FROM plans_planledgerentry WHERE id = %s", [entries[1].pk])

    report = ledger.verify_ledger()
    assert len(report.broken) == 1
    assert report.broken[0].startswith(f"entry {entries[2].pk} (plan {plan.id}, position 3)")
    assert "expected chain position 2, found 3" in report.broken[0]
    assert "missing" in report.broken[0]
    with pytest.raises(CommandError, match=rf"entry {entries[2].pk} .*missing"):
        verify_command()


def test_a_changed_tenant_chain_entry_is_named(world):
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident")
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=False, reason="over")
    engaged = tenant_chain(world.tenant.id)[0]

    tamper("UPDATE plans_planledgerentry SET actor = 'system:nobody' WHERE id = %s", [engaged.pk])

    report = ledger.verify_ledger(tenant_id=world.tenant.id)
    assert len(report.broken) == 1
    assert report.broken[0].startswith(f"entry {engaged.pk} (tenant {world.tenant.id}, position 1)")


def test_a_cut_chain_tail_is_caught_only_by_the_digest(world):
    plan = plan_with_history(world)
    entries = plan_chain(plan.id)
    digest = in_transaction(ledger.tenant_digest, world.tenant.id, actor="system:tests")
    assert digest.data["plan_heads"] == {str(plan.id): {"chain_seq": 5, "entry_hash": entries[-1].entry_hash}}

    tamper("DELETE FROM plans_planledgerentry WHERE id = %s", [entries[-1].pk])

    # The shortened chain is internally consistent: walking it alone cannot tell.
    assert ledger.verify_ledger(plan_id=plan.id).ok
    assert verify_command(plan=str(plan.id)) == "OK: 1 chain(s), 4 entries verified\n"
    report = ledger.verify_ledger()
    assert len(report.broken) == 1
    assert report.broken[0].startswith(f"entry {digest.pk} (digest, tenant {world.tenant.id})")
    assert f"plan {plan.id} lacks the head it recorded at position 5" in report.broken[0]
    with pytest.raises(CommandError, match=f"plan {plan.id} lacks the head"):
        verify_command(tenant=world.tenant.slug)


def test_a_dropped_whole_plan_chain_is_caught_by_the_digest(world):
    kept, dropped = plan_with_history(world), propose(world, account=AccountFactory(tenant=world.tenant,
                                                                                   owner=world.seller))
    in_transaction(ledger.tenant_digest, world.tenant.id, actor="system:tests")

    tamper("DELETE FROM plans_planledgerentry WHERE plan_id = %s", [dropped.id])

    report = ledger.verify_ledger()
    assert len(report.broken) == 1
    assert f"plan {dropped.id} lacks the head it recorded at position 1" in report.broken[0]
    assert str(kept.id) not in report.broken[0]


def test_a_consistently_rewritten_tail_is_caught_by_the_digest(world):
    """Re-hashing every entry after the forged one makes the chain sound again; the digest still knows."""
    plan = plan_with_history(world)
    in_transaction(ledger.tenant_digest, world.tenant.id, actor="system:tests")
    entries = plan_chain(plan.id)

    disable_row_trigger()
    prev_hash = entries[1].prev_hash
    entries[1].explanation = "Approved by the CEO."
    for entry in entries[1:]:
        entry.prev_hash = prev_hash
        entry.entry_hash = ledger.compute_hash(prev_hash, entry)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE plans_planledgerentry SET explanation = %s, prev_hash = %s, entry_hash = %s WHERE id = %s",
                [entry.explanation, entry.prev_hash, entry.entry_hash, entry.pk],
            )
        prev_hash = entry.entry_hash

    assert ledger.verify_ledger(plan_id=plan.id).ok
    report = ledger.verify_ledger()
    assert len(report.broken) == 1
    assert f"plan {plan.id} lacks the head it recorded at position 5" in report.broken[0]


def test_verify_command_filters_by_tenant_and_plan(world, other_world):
    tampered = plan_with_history(world)
    sibling = propose(world, account=AccountFactory(tenant=world.tenant, owner=world.seller))
    elsewhere = plan_with_history(other_world)
    services.kill_switch_set(tenant_id=other_world.tenant.id, user=other_world.admin, engaged=True, reason="drill")
    middle = plan_chain(tampered.id)[1]
    tamper("UPDATE plans_planledgerentry SET explanation = 'forged' WHERE id = %s", [middle.pk])

    assert verify_command(tenant=other_world.tenant.slug) == "OK: 2 chain(s), 6 entries verified\n"
    assert verify_command(plan=str(sibling.id)) == "OK: 1 chain(s), 1 entries verified\n"
    assert verify_command(plan=str(elsewhere.id)) == "OK: 1 chain(s), 5 entries verified\n"
    assert verify_command(tenant=world.tenant.slug, plan=str(sibling.id)) == "OK: 1 chain(s), 1 entries verified\n"
    # A plan of another tenant is not in this tenant's ledger.
    assert verify_command(tenant=world.tenant.slug, plan=str(elsewhere.id)) == "OK: 0 chain(s), 0 entries verified\n"
    with pytest.raises(CommandError, match=rf"entry {middle.pk} "):
        verify_command(tenant=world.tenant.slug)
    with pytest.raises(CommandError, match=rf"entry {middle.pk} "):
        verify_command(plan=str(tampered.id))
    with pytest.raises(CommandError, match="no tenant 'no-such-tenant'"):
        verify_command(tenant="no-such-tenant")
    with pytest.raises(CommandError, match="--plan must be a plan id"):
        verify_command(plan="not-a-uuid")


# --- the digest -------------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """Move the wall clock the services and the ledger read (django.utils.timezone.now)."""
    real_now = timezone.now()

    def set_to(moment):
        monkeypatch.setattr(timezone, "now", lambda: moment)

    set_to.real_now = real_now
    return set_to


def head_of(plan) -> dict:
    last = plan_chain(plan.id)[-1]
    return {"chain_seq": last.chain_seq, "entry_hash": last.entry_hash}


def test_a_digest_records_only_plan_chains_changed_since_the_previous_one(world, clock):
    now = clock.real_now
    second_account = AccountFactory(tenant=world.tenant, owner=world.seller)
    third_account = AccountFactory(tenant=world.tenant, owner=world.seller)
    clock(now - timedelta(hours=5))
    old = propose(world)
    services.plan_approve(plan_id=old.id, user=world.approver)
    clock(now - timedelta(hours=3, minutes=30))
    recent = propose(world, account=second_account)  # before the first digest, but within its overlap
    clock(now - timedelta(hours=3))

    first = in_transaction(ledger.tenant_digest, world.tenant.id, actor="system:tests")

    assert first.data["plan_heads"] == {str(old.id): head_of(old), str(recent.id): head_of(recent)}
    assert first.explanation == "Digest of 2 plan chain head(s)."

    # given three hours later: a new plan, nothing new for the others
    clock(now)
    new = propose(world, account=third_account)

    second = in_transaction(ledger.tenant_digest, world.tenant.id, actor="system:tests")

    # `old` last changed 2 hours before the first digest, beyond the 1-hour overlap: not recorded again.
    # `recent` changed 30 minutes before the first digest: the overlap records it once more.
    assert second.data["plan_heads"] == {str(recent.id): head_of(recent), str(new.id): head_of(new)}

    # when the old plan moves again, the next digest picks it up at its new head
    activate(old.id)
    third = in_transaction(ledger.tenant_digest, world.tenant.id, actor="system:tests")

    assert third.data["plan_heads"] == {str(old.id): head_of(old), str(new.id): head_of(new)}
    assert head_of(old)["chain_seq"] == 3
    assert [entry.event_type for entry in tenant_chain(world.tenant.id)] == [EventType.LEDGER_DIGEST] * 3
    assert_chain_is_sound(tenant_chain(world.tenant.id))
    assert ledger.verify_ledger().ok


def test_a_digest_covers_only_its_own_tenant(world, other_world):
    mine, theirs = propose(world), propose(other_world)

    digest = in_transaction(ledger.tenant_digest, world.tenant.id, actor="system:tests")

    assert digest.tenant_id == world.tenant.id
    assert digest.plan_id is None
    assert digest.data["plan_heads"] == {str(mine.id): head_of(mine)}
    assert str(theirs.id) not in digest.data["plan_heads"]


def test_the_digest_task_appends_one_digest_per_tenant(world, other_world):
    mine = plan_with_history(world)
    theirs = propose(other_world)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident")

    digested = ledger_digest_all_tenants()

    assert digested == 2
    mine_chain, theirs_chain = tenant_chain(world.tenant.id), tenant_chain(other_world.tenant.id)
    assert [entry.event_type for entry in mine_chain] == [EventType.KILL_SWITCH_FLIPPED, EventType.LEDGER_DIGEST]
    assert [entry.event_type for entry in theirs_chain] == [EventType.LEDGER_DIGEST]
    assert mine_chain[-1].actor == "system:ledger_digest"
    assert mine_chain[-1].data["plan_heads"] == {str(mine.id): head_of(mine)}
    assert theirs_chain[-1].data["plan_heads"] == {str(theirs.id): head_of(theirs)}
    assert_chain_is_sound(mine_chain)
    assert ledger.verify_ledger().ok


# --- why: the entries plans.why answers from ----------------------------------------------------


def why(plan) -> PlanWhy:
    return plan_why(RevenuePlan.objects.get(pk=plan.id), now=timezone.now())


def test_why_a_plan_exists_is_its_creation_entry_with_trigger_and_inputs(world):
    inputs = {"signals": ["SUPPORT_RISK"], "renewal_date": "2030-01-31", "posture": {"health": "red"}}
    plan = propose(world, trigger="signal:SUPPORT_RISK", inputs_summary=inputs)
    services.plan_approve(plan_id=plan.id, user=world.approver)

    answer = why(plan).exists

    (entry,) = answer.entries
    assert answer.code == "signal:SUPPORT_RISK"
    assert entry.event_type == EventType.PLAN_CREATED
    assert entry.chain_seq == 1
    assert entry.actor == f"user:{world.seller.pk}"
    assert entry.reason_code == "signal:SUPPORT_RISK"
    assert entry.data["trigger"] == "signal:SUPPORT_RISK"
    assert entry.data["inputs"] == inputs
    assert entry.data["plan"]["plan_id"] == str(plan.id)


def test_why_a_plan_exists_without_a_creation_entry_says_so(world):
    answer = why(make_plan(account=world.account)).exists
    assert (answer.code, answer.entries) == ("UNKNOWN", [])


def _paused(world):
    plan = plan_with_history(world)
    services.plan_resume(plan_id=plan.id, user=world.seller)
    return services.plan_pause(plan_id=plan.id, user=world.approver, reason="waiting for the legal review")


def _aborted(world):
    plan = propose(world)
    return services.plan_abort(plan_id=plan.id, user=world.admin, reason="  the customer signed elsewhere ")


def _completed(world):
    plan = propose(world)
    services.plan_approve(plan_id=plan.id, user=world.approver)
    SignalFactory(account=world.account, signal_type="RENEWAL_COMMITTED", observed_at=timezone.now())
    engine.advance_plan(plan.id)  # activates it, and the evaluator finds the objective met
    return RevenuePlan.objects.get(pk=plan.id)


def _expired(world):
    # Renewal in 20 days: day -30 has already passed.
    account = AccountFactory(tenant=world.tenant, owner=world.seller,
                             renewal_date=timezone.now().date() + timedelta(days=20))
    plan = propose(world, account=account)
    engine.advance_plan(plan.id)
    return RevenuePlan.objects.get(pk=plan.id)


@pytest.mark.parametrize(
    ("make_stopped", "status", "event_type", "reason_code", "explanation"),
    [
        (_paused, PlanStatus.PAUSED, EventType.PLAN_PAUSED, "PAUSED_BY_USER", "waiting for the legal review"),
        (_aborted, PlanStatus.ABORTED, EventType.PLAN_ABORTED, "ABORTED_BY_USER", "the customer signed elsewhere"),
        (_completed, PlanStatus.COMPLETED, EventType.PLAN_COMPLETED, "objective_met",
         "The objective was met: the renewal was committed before day -30."),
        (_expired, PlanStatus.EXPIRED, EventType.PLAN_EXPIRED, "expired",
         "The plan's time window closed before it finished."),
    ],
    ids=["paused", "aborted", "completed", "expired"],
)
def test_why_a_plan_stopped_is_its_stopping_entry(world, make_stopped, status, event_type, reason_code,
                                                  explanation):
    plan = make_stopped(world)
    assert plan.plan_status == status

    answer = why(plan).stopped

    (entry,) = answer.entries
    assert answer.code == reason_code
    assert entry.event_type == event_type
    assert entry.reason_code == reason_code
    assert entry.explanation == explanation
    # the latest stop, not an earlier pause (the layer and closed-step entries that follow it are not stops)
    assert entry.pk == [stop for stop in plan_chain(plan.id) if stop.event_type == event_type][-1].pk
    assert entry.data["to_status"] == status
    assert (plan.stop_reason_code, plan.stop_reason_detail) == (reason_code, explanation)


def test_nothing_says_a_plan_stopped_while_it_runs_or_waits(world):
    plan = propose(world)
    assert why(plan).stopped is None
    plan = services.plan_approve(plan_id=plan.id, user=world.approver)
    assert why(plan).stopped is None
    engine.advance_plan(plan.id)
    plan = services.plan_pause(plan_id=plan.id, user=world.seller)
    plan = services.plan_resume(plan_id=plan.id, user=world.seller)

    assert plan.plan_status == PlanStatus.ACTIVE
    assert why(plan).stopped is None


# --- activation_blocked: once per change of reasons ---------------------------------------------


def blocked_entries(plan) -> list[PlanLedgerEntry]:
    return [entry for entry in plan_chain(plan.id) if entry.event_type == EventType.ACTIVATION_BLOCKED]


def test_activation_blocked_is_written_once_per_change_of_reasons(world):
    plan = propose(world)
    services.plan_approve(plan_id=plan.id, user=world.approver)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="incident")

    # given a kill switch: two attempts, one entry
    for _ in range(2):
        assert engine.advance_plan(plan.id) == []
        assert RevenuePlan.objects.get(pk=plan.id).plan_status == PlanStatus.APPROVED
    entries = blocked_entries(plan)
    assert len(entries) == 1
    assert entries[0].reason_code == PRECONDITION_FAILED
    assert [reason["code"] for reason in entries[0].data["reasons"]] == [PRECONDITION_FAILED]
    assert "tenant kill switch" in entries[0].explanation

    # when a conflicting plan also becomes ACTIVE: the reasons change, a second entry, once
    conflicting = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    for _ in range(2):
        assert engine.advance_plan(plan.id) == []
        assert RevenuePlan.objects.get(pk=plan.id).plan_status == PlanStatus.APPROVED

    entries = blocked_entries(plan)
    assert len(entries) == 2
    assert [reason["code"] for reason in entries[1].data["reasons"]] == [PRECONDITION_FAILED,
                                                                         CONFLICT_ACTIVE_PLAN_EXISTS]
    assert str(conflicting.id) in entries[1].explanation
    assert [entry.event_type for entry in plan_chain(plan.id)] == [
        EventType.PLAN_CREATED, EventType.PLAN_APPROVED, EventType.ACTIVATION_BLOCKED, EventType.ACTIVATION_BLOCKED,
    ]
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.APPROVED
    assert_chain_is_sound(plan_chain(plan.id))
