"""The hash chains: appending an entry to its chain, and the hash that links it to the one before.

Chains (DESIGN §6): one per plan, serialised by the plan's row lock that every plan write already
holds; one per tenant for entries that belong to no plan, serialised by a transaction-scoped
advisory lock. entry_hash = sha256(prev_hash + canonical JSON of the entry). A unique
(chain, chain_seq) constraint makes a fork impossible even if a caller forgot the lock.
"""
import functools
import hashlib
import json
import threading
from contextlib import contextmanager
from datetime import UTC
from decimal import Decimal
from uuid import UUID, uuid4

from django.db import connection, transaction
from django.db.models import Subquery
from django.utils import timezone as dj_timezone

from plans.models import EventType, PlanLedgerEntry, RevenuePlan
from plans.schemas import plan_to_schema
from revplan.compiled import CompiledQuery
from revplan.rows import insert_columns, insert_values, inserted

GENESIS_HASH = "0" * 64


def user_actor(user) -> str:
    return f"user:{user.pk}"


def system_actor(component: str) -> str:
    return f"system:{component}"


def _postgresql_number(text: str) -> float | int:
    # jsonb keeps numbers as exact decimals and prints them without an exponent: the float 1e+20
    # comes back as the integer 100000000000000000000 (a float written with "e+" is always whole).
    return int(Decimal(text)) if "e+" in text else float(text)


def _jsonable(data: dict) -> dict:
    """What PostgreSQL will hand back, so the stored entry hashes the same as the appended one."""
    return json.loads(json.dumps(data, default=str, sort_keys=True), parse_float=_postgresql_number)


def canonical_fields(entry: PlanLedgerEntry) -> dict:
    return {
        "tenant_id": str(entry.tenant_id),
        "plan_id": str(entry.plan_id) if entry.plan_id else None,
        "step_id": str(entry.step_id) if entry.step_id else None,
        "chain_seq": entry.chain_seq,
        "event_type": entry.event_type,
        "actor": entry.actor,
        "reason_code": entry.reason_code,
        "explanation": entry.explanation,
        "data": entry.data,
        "occurred_at": entry.occurred_at.astimezone(UTC).isoformat(),
    }


def compute_hash(prev_hash: str, entry: PlanLedgerEntry) -> str:
    canonical = json.dumps(canonical_fields(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def lock_tenant_chain(tenant_id: UUID) -> None:
    # Advisory keys are signed 64-bit; the top half of the tenant UUID is plenty of spread.
    key = int.from_bytes(UUID(str(tenant_id)).bytes[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


# The plan chain's last entry, read by a transaction's first append to the chain (compiled once:
# revplan.compiled; a step appends two or three).
_PLAN_CHAIN_HEAD = CompiledQuery(
    lambda plan_id: PlanLedgerEntry.objects.filter(plan_id=plan_id).order_by("-chain_seq")
    .values_list("chain_seq", "entry_hash")[:1],
    plan_id=uuid4(),
)


def append(
    *,
    tenant_id: UUID,
    plan_id: UUID | None,
    event_type: EventType,
    actor: str,
    reason_code: str = "",
    explanation: str = "",
    data: dict | None = None,
    step_id: UUID | None = None,
) -> PlanLedgerEntry:
    if not connection.in_atomic_block:
        raise RuntimeError("ledger entries are appended inside the transaction that makes the change")
    entry = PlanLedgerEntry(
        tenant_id=tenant_id,
        plan_id=plan_id,
        step_id=step_id,
        event_type=event_type,
        actor=actor,
        reason_code=reason_code,
        explanation=explanation,
        data=_jsonable(data or {}),
        occurred_at=dj_timezone.now(),
    )
    if plan_id is None:
        lock_tenant_chain(tenant_id)
        _link(entry, PlanLedgerEntry.objects.filter(tenant_id=tenant_id, plan__isnull=True).order_by("-chain_seq")
              .values_list("chain_seq", "entry_hash").first())
        _insert(entry)
        return entry
    held = getattr(connection, "_revplan_held_entries", None)
    written = _written_head(plan_id)
    if held is not None:
        held.link(entry, written)
        held.rows.append((entry, _remember_head(plan_id, entry)))
        return entry
    if written is not None:
        _link(entry, written)
        _insert(entry)
    elif not _insert_after_committed_head(entry, _COMMITTED_HEADS.get(plan_id)):
        _link(entry, _PLAN_CHAIN_HEAD.first(plan_id=plan_id))
        _insert(entry)
    _remember_head(plan_id, entry)
    return entry


def _link(entry: PlanLedgerEntry, last: tuple[int, str] | None) -> None:
    """Make `entry` the link after `last` (the chain's (chain_seq, entry_hash); None: it is the first)."""
    last_seq, entry.prev_hash = last if last else (0, GENESIS_HASH)
    entry.chain_seq = last_seq + 1
    entry.entry_hash = compute_hash(entry.prev_hash, entry)


def _insert(entry: PlanLedgerEntry) -> None:
    """entry.save(force_insert=True), as one statement of our own (revplan.rows): a step appends two or three
    entries, and Model.save's Python was a good part of each."""
    fields, columns, values = insert_columns(PlanLedgerEntry)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {PlanLedgerEntry._meta.db_table} ({columns}) VALUES ({values}) RETURNING id",
                       insert_values(fields, entry))
        inserted(entry, cursor.fetchone()[0])


# --- the plan chain's head, as this process last committed it ---------------------------------------
# A worker runs a plan's steps one transaction after another, and each appends to the plan's chain: the
# first append of the next transaction tries the head its process last committed (no read of the chain)
# with an insert that writes nothing unless that head is in the chain and nothing follows it (another process
# may have appended meanwhile), and only then reads the head. Bounded: the oldest plans' heads go first.
_COMMITTED_HEADS: dict = {}
_COMMITTED_HEADS_KEPT = 10_000
_COMMITTED_HEADS_LOCK = threading.Lock()


def chain_head_columns(plan_id) -> dict:
    """The plan chain's last entry as two columns of a read of plans (`plan_id`: an OuterRef to the plan's id), for
    note_chain_heads: a batch's first append to each plan's chain then needs no read of the chain."""
    last = PlanLedgerEntry.objects.filter(plan_id=plan_id).order_by("-chain_seq")
    return {_HEAD_SEQ: Subquery(last.values("chain_seq")[:1]), _HEAD_HASH: Subquery(last.values("entry_hash")[:1])}


_HEAD_SEQ, _HEAD_HASH = "ledger_head_seq", "ledger_head_hash"


def note_chain_heads(plans) -> None:
    """The heads chain_head_columns read with `plans`, as the heads their next append tries first (as the ones this
    process committed last). The read's snapshot may be older than the plan's lock, if the statement waited for it:
    a head that moved on since makes that insert write nothing, and the append reads the chain, as it would."""
    with _COMMITTED_HEADS_LOCK:
        for plan in plans:
            seq, entry_hash = plan.__dict__.pop(_HEAD_SEQ), plan.__dict__.pop(_HEAD_HASH)
            _remember_committed(plan.pk, (seq, entry_hash) if seq is not None else _EMPTY_CHAIN)


def _remember_committed(plan_id: UUID, head: tuple[int, str]) -> None:
    """`head` as the plan's committed head, with _COMMITTED_HEADS_LOCK held; the oldest plans' go first."""
    _COMMITTED_HEADS.pop(plan_id, None)  # re-inserted last: the dict's order is the forgetting order
    _COMMITTED_HEADS[plan_id] = head
    if len(_COMMITTED_HEADS) > _COMMITTED_HEADS_KEPT:
        _COMMITTED_HEADS.pop(next(iter(_COMMITTED_HEADS)), None)


# A chain with no entry yet, as a head: its first entry's position is free only while it is (its insert conflicts
# with any other first entry).
_EMPTY_CHAIN = (0, GENESIS_HASH)


def _insert_after_sql(*, first: bool) -> str:
    """The entry's insert, made only where its predecessor is in the chain as remembered (a database restored
    to an earlier point may have lost it) and its position is free (`first`: the chain's first entry)."""
    _, columns, values = insert_columns(PlanLedgerEntry)
    table = PlanLedgerEntry._meta.db_table
    predecessor = "" if first else (f" WHERE EXISTS (SELECT 1 FROM {table} WHERE plan_id = %s AND chain_seq = %s "
                                    "AND entry_hash = %s)")
    return f"INSERT INTO {table} ({columns}) SELECT {values}{predecessor} ON CONFLICT DO NOTHING RETURNING id"


def _insert_after_committed_head(entry: PlanLedgerEntry, head: tuple[int, str] | None) -> bool:
    """Insert `entry` as the link after `head`; False (nothing written) with no head remembered, or when
    `head` is not in the chain or not its last entry any more."""
    if head is None:
        return False
    first = head == _EMPTY_CHAIN
    _link(entry, None if first else head)
    fields, _, _ = insert_columns(PlanLedgerEntry)
    with connection.cursor() as cursor:
        cursor.execute(_insert_after_sql(first=first),
                       [*insert_values(fields, entry), *([] if first else [entry.plan_id, *head])])
        row = cursor.fetchone()
    if row is None:
        return False
    inserted(entry, row[0])
    return True


# --- the plan chain's head, as this transaction last wrote it ---------------------------------------
# A plan's step writes two or three entries in one transaction under the plan's row lock, which every
# writer of its chain holds: nobody else can append meanwhile, so the entry written last is the head —
# the next append needs no read. It counts only while the write it remembers is still part of the open
# transaction: each is remembered with a marker registered through transaction.on_commit, and Django drops
# a transaction's markers when it commits or rolls back, and a savepoint's when that savepoint rolls back.
# (Were it ever wrong, the unique (plan, chain_seq) constraint would refuse the insert: no fork is written.)


class _Written:
    """An on_commit callback: its presence in the connection's list says the write is part of the open
    transaction; called when it commits, it makes the entry the plan's head as this process committed it."""

    __slots__ = ("entry_hash", "plan_id", "seq")

    def __init__(self, plan_id: UUID, seq: int, entry_hash: str):
        self.plan_id, self.seq, self.entry_hash = plan_id, seq, entry_hash

    def __call__(self) -> None:
        with _COMMITTED_HEADS_LOCK:  # a threaded server's requests share the memory
            _remember_committed(self.plan_id, (self.seq, self.entry_hash))


def _remember_head(plan_id: UUID, entry: PlanLedgerEntry) -> "_Written":
    written = _Written(plan_id, entry.chain_seq, entry.entry_hash)
    transaction.on_commit(written)
    heads = getattr(connection, "_revplan_written_heads", None)
    if heads is None:
        heads = connection._revplan_written_heads = {}
    heads[plan_id] = written
    return written


def _written_head(plan_id: UUID) -> tuple[int, str] | None:
    """The head this transaction wrote (or holds, in a held() block) for the plan's chain, if any."""
    written = getattr(connection, "_revplan_written_heads", {}).get(plan_id)
    if written is None or not any(callback is written for _, callback, _ in connection.run_on_commit):
        return None  # not written in this transaction, or rolled back since
    return written.seq, written.entry_hash


# --- entries held for one statement (held()) ----------------------------------------------------------
# A step's success appends ACTION_EXECUTED and the next step's start STEP_ATTEMPT_STARTED in one transaction; an
# activation ACTIVATED and its first step's start; a batch's plans a few each. Inside held() a plan chain's entry
# is linked as it is appended (its chain_seq and hashes are set at once) and written with the others in one INSERT:
# at the block's end, or before any statement that touches the ledger (a read of it, a tenant chain's append), so
# nothing ever sees the chain without them. An entry's id is set when it is written.


@contextmanager
def held():
    """Hold the plan chains' entries appended in the block and write them in one statement at its end. The block
    is part of the caller's transaction (atomic without a savepoint): an error out of it leaves nothing written."""
    with transaction.atomic(savepoint=False):
        if getattr(connection, "_revplan_held_entries", None) is not None:
            yield  # an outer block writes them
            return
        entries = connection._revplan_held_entries = _Held()
        try:
            with connection.execute_wrapper(_write_before_ledger_statements):
                yield
                entries.write()
        finally:
            connection._revplan_held_entries = None


def write_held() -> None:
    """Write the entries held so far: before a statement that is to be its transaction's last (a budget's take)."""
    entries = getattr(connection, "_revplan_held_entries", None)
    if entries is not None:
        entries.write()


def _write_before_ledger_statements(execute, sql, params, many, context):
    entries = context["connection"]._revplan_held_entries
    if entries is not None and entries.rows and (not isinstance(sql, str) or _LEDGER_TABLE in sql):
        entries.write()
    return execute(sql, params, many, context)


_LEDGER_TABLE = PlanLedgerEntry._meta.db_table


class _Held:
    def __init__(self):
        self.rows: list[tuple[PlanLedgerEntry, _Written]] = []  # in the order appended
        self.bases: dict = {}  # plan id -> the committed head (remembered, not read) its held entries follow

    def link(self, entry: PlanLedgerEntry, written: tuple[int, str] | None) -> None:
        if written is not None:  # after an entry of this transaction's, held or written
            _link(entry, written)
            return
        head = _COMMITTED_HEADS.get(entry.plan_id)
        if head is None:
            self.bases.pop(entry.plan_id, None)
            _link(entry, _PLAN_CHAIN_HEAD.first(plan_id=entry.plan_id))
        else:
            self.bases[entry.plan_id] = head
            _link(entry, None if head == _EMPTY_CHAIN else head)

    def write(self) -> None:
        """Write the held entries still part of the transaction (a savepoint rolled back drops its markers): the
        chains whose remembered head moved on are linked again after the head read, and written in a second
        statement."""
        live = {id(callback) for _, callback, _ in connection.run_on_commit}
        rows, bases = [row for row in self.rows if id(row[1]) in live], self.bases
        self.rows, self.bases = [], {}
        refused = _insert_held(rows, bases) if rows else set()
        if refused:
            relinked = [row for row in rows if row[0].plan_id in refused]
            for plan_id in refused:
                head = _PLAN_CHAIN_HEAD.first(plan_id=plan_id)
                for entry, written in (row for row in relinked if row[0].plan_id == plan_id):
                    _link(entry, head)
                    head = entry.chain_seq, entry.entry_hash
                    written.seq, written.entry_hash = head  # the head the commit remembers
            _insert_held(relinked, {})


def _insert_held(rows: list, bases: dict) -> set:
    """Insert the entries of `rows`; those of a plan in `bases` only where its head is still that one (the plan's
    row lock, which every writer of its chain holds, keeps it so while we write). The plans not written."""
    fields, _, _ = insert_columns(PlanLedgerEntry)
    params = []
    for entry, _ in rows:
        params += [*insert_values(fields, entry), *bases.get(entry.plan_id, (None, None))]
    with connection.cursor() as cursor:
        cursor.execute(_insert_held_sql(len(rows)), params)
        ids = {(plan_id, seq): pk for pk, plan_id, seq in cursor.fetchall()}
    refused = set()
    for entry, _ in rows:
        pk = ids.get((entry.plan_id, entry.chain_seq))
        if pk is None:
            refused.add(entry.plan_id)
        else:
            inserted(entry, pk)
    return refused


@functools.cache
def _insert_held_sql(rows: int) -> str:
    _, columns, values = insert_columns(PlanLedgerEntry)
    table = _LEDGER_TABLE
    given = ", ".join(f"({values}, %s::integer, %s::varchar, {number})" for number in range(rows))
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM (VALUES {given}) "
        f"AS given ({columns}, base_seq, base_hash, held_order) "
        f"WHERE given.base_seq IS NULL OR ((given.base_seq = 0 OR EXISTS (SELECT 1 FROM {table} chain "
        "WHERE chain.plan_id = given.plan_id AND chain.chain_seq = given.base_seq "
        "AND chain.entry_hash = given.base_hash)) "
        f"AND NOT EXISTS (SELECT 1 FROM {table} chain WHERE chain.plan_id = given.plan_id "
        "AND chain.chain_seq > given.base_seq)) ORDER BY given.held_order RETURNING id, plan_id, chain_seq"
    )


def snapshot(plan: RevenuePlan, steps=None) -> dict:
    """The plan as RevenuePlanV1, the shape entries record it in."""
    return plan_to_schema(plan, steps).model_dump(mode="json")
