"""The autonomy budgets' units: taken in the transaction that starts the autonomous attempts, all or none.

An autonomous start takes a unit of two daily budgets, its account's and its action type's. The action
type's row is one per (tenant, day, action type): every autonomous start of that type in the tenant
updates it, and holds its row lock until the transaction commits, so the other workers' starts of that
type queue behind it. So a transaction that starts several steps (a batch of advances), or that records
a step's outcome and starts the next, collects its units (Units) and takes them in one statement as its
last before the commit: the hot row is held for that statement and the commit, not for the rest of the
work. Should a budget be short, nothing is taken (BudgetShort): the caller rolls its transaction or
savepoint back and advances its plans again with each unit taken at once (take), so that the starts
that find no unit left are decided REQUIRE_APPROVAL (BUDGET_EXHAUSTED).

A second transaction on a budget row waits for the first to commit and then sees its count: two workers
can never both take the last unit.
"""
from collections import Counter
from dataclasses import dataclass
from datetime import date
from uuid import UUID

from django.db import connection


@dataclass(frozen=True)
class Unit:
    """One autonomous start's claim on its account's and its action type's budget for `day`."""

    tenant_id: UUID
    account_id: UUID
    action_type: str
    day: date
    account_limit: int
    action_type_limit: int


class BudgetShort(Exception):
    """A budget had fewer units left than the transaction's starts took: nothing was taken."""


class Units:
    """The units a transaction's starts decided on, taken by take_or_raise just before it commits."""

    def __init__(self):
        self._wanted: list[Unit] = []

    def defer(self, unit: Unit) -> None:
        self._wanted.append(unit)

    def take_or_raise(self) -> None:
        wanted, self._wanted = self._wanted, []
        if wanted and not take(wanted):
            raise BudgetShort(f"{len(wanted)} autonomy budget units wanted, not all left")


def take(units: list[Unit]) -> bool:
    """Take every unit, or none (False, having given back any it took). Inside the caller's transaction,
    whose rollback gives them back too."""
    if not connection.in_atomic_block:
        raise RuntimeError("autonomy budget is taken inside the transaction that starts the attempt")
    by_account = _rows(units, lambda unit: (unit.tenant_id, unit.day, unit.account_id), "account_limit")
    by_action_type = _rows(units, lambda unit: (unit.tenant_id, unit.day, unit.action_type), "action_type_limit")
    if any(count > limit for count, limit in (*by_account.values(), *by_action_type.values())):
        return False
    params: list = []
    accounts, action_types = _values(by_account, params, "uuid"), _values(by_action_type, params, "varchar")
    with connection.cursor() as cursor:
        cursor.execute(_TAKE.format(accounts=accounts, action_types=action_types), params)
        taken = cursor.fetchall()
        if len(taken) == len(by_account) + len(by_action_type):
            return True
        if taken:
            given_back: list = []
            for tenant_id, day, account_id, action_type in taken:
                count = (by_account[tenant_id, day, account_id] if account_id else
                         by_action_type[tenant_id, day, action_type])[0]
                given_back.extend((tenant_id, day, account_id, action_type, count))
            rows = ", ".join(["(%s::uuid, %s::date, %s::uuid, %s::varchar, %s::integer)"] * len(taken))
            cursor.execute(_GIVE_BACK.format(rows=rows), given_back)
    return False


def _rows(units: list[Unit], key, limit: str) -> dict[tuple, tuple[int, int]]:
    """(tenant, day, account or action type) -> (units wanted of its row, its limit)."""
    counts = Counter(key(unit) for unit in units)
    limits = {key(unit): getattr(unit, limit) for unit in units}
    return {row: (count, limits[row]) for row, count in counts.items()}


def _values(rows: dict[tuple, tuple[int, int]], params: list, key_type: str) -> str:
    # In key order: two transactions taking units of the same rows lock them in the same order.
    for (tenant_id, day, key), (count, limit) in sorted(rows.items(), key=lambda row: tuple(map(str, row[0]))):
        params.extend((tenant_id, day, key, count, limit))
    return ", ".join([f"(%s::uuid, %s::date, %s::{key_type}, %s::integer, %s::integer)"] * len(rows))


# Each INSERT creates the day's row on first use or counts its units in unless that passes its limit. A
# data-modifying CTE runs whether or not it is read; the rows returned are the budget rows counted.
_TAKE = """
WITH account_wanted (tenant_id, day, account_id, wanted, max_used) AS (VALUES {accounts}),
action_type_wanted (tenant_id, day, action_type, wanted, max_used) AS (VALUES {action_types}),
account_units AS (
    INSERT INTO orchestrator_autonomyusage AS usage (tenant_id, day, account_id, action_type, used)
    SELECT tenant_id, day, account_id, '', wanted FROM account_wanted
    ON CONFLICT (tenant_id, day, account_id) WHERE account_id IS NOT NULL
    DO UPDATE SET used = usage.used + EXCLUDED.used
    WHERE usage.used + EXCLUDED.used <= (SELECT max_used FROM account_wanted limits WHERE limits.tenant_id =
        EXCLUDED.tenant_id AND limits.day = EXCLUDED.day AND limits.account_id = EXCLUDED.account_id)
    RETURNING tenant_id, day, account_id, action_type
), action_type_units AS (
    INSERT INTO orchestrator_autonomyusage AS usage (tenant_id, day, account_id, action_type, used)
    SELECT tenant_id, day, NULL, action_type, wanted FROM action_type_wanted
    ON CONFLICT (tenant_id, day, action_type) WHERE account_id IS NULL
    DO UPDATE SET used = usage.used + EXCLUDED.used
    WHERE usage.used + EXCLUDED.used <= (SELECT max_used FROM action_type_wanted limits WHERE limits.tenant_id =
        EXCLUDED.tenant_id AND limits.day = EXCLUDED.day AND limits.action_type = EXCLUDED.action_type)
    RETURNING tenant_id, day, account_id, action_type
)
SELECT * FROM account_units UNION ALL SELECT * FROM action_type_units
"""

# The units one budget gave when another had too few (this transaction holds the rows it counted them in).
_GIVE_BACK = """
UPDATE orchestrator_autonomyusage AS usage SET used = usage.used - given.used
FROM (VALUES {rows}) AS given (tenant_id, day, account_id, action_type, used)
WHERE usage.tenant_id = given.tenant_id AND usage.day = given.day
  AND usage.account_id IS NOT DISTINCT FROM given.account_id AND usage.action_type = given.action_type
"""
