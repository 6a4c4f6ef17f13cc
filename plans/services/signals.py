"""Signals observed about an account: the one way to record them — typed (plans.signals), bounded,
idempotent per (tenant, source, external_id), ledgered when they come from outside, and waking the plans
whose objective they may meet."""
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from plans import ledger
from plans.authority import Verb
from plans.errors import Conflict, NotFound, Reason, ValidationFailed
from plans.models import Account, AccountSignal, IntegrationToken, PlanStatus, RevenuePlan
from plans.plan_types import PLAN_TYPES, objective_signal_types_of_any_version
from plans.schemas import nests_deeper_than
from plans.services.common import SystemActor, require_authority
from plans.signals import OUTSIDE_SIGNAL_TYPES, SYSTEM_SIGNAL_TYPES, SYSTEM_SOURCE, TAXONOMY

UNKNOWN_SIGNAL_TYPE = "UNKNOWN_SIGNAL_TYPE"
SIGNAL_TYPE_RESERVED = "SIGNAL_TYPE_RESERVED"
INVALID_SOURCE = "INVALID_SOURCE"
INVALID_EXTERNAL_ID = "INVALID_EXTERNAL_ID"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
PAYLOAD_TOO_DEEP = "PAYLOAD_TOO_DEEP"
PAYLOAD_NOT_OBJECT = "PAYLOAD_NOT_OBJECT"
PAYLOAD_NOT_JSON = "PAYLOAD_NOT_JSON"
OBSERVED_IN_FUTURE = "OBSERVED_IN_FUTURE"
INVALID_OBSERVED_AT = "INVALID_OBSERVED_AT"
EXTERNAL_ID_REUSED = "EXTERNAL_ID_REUSED"

# A signal says what happened, it is not a document store: 16 KB of compact JSON holds any CRM event's
# useful fields, and 5 levels ({"deal": {"contacts": [{"roles": [...]}]}}) any sane shape of them.
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_PAYLOAD_DEPTH = 5
# A source's clock may run a little ahead of ours; beyond that a date in the future is a mistake, and it
# could meet an objective that has not been met yet.
FUTURE_TOLERANCE = timedelta(minutes=5)
SOURCE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
MAX_EXTERNAL_ID_LENGTH = 200


class RecordedSignal(NamedTuple):
    """What signal_record returns, like get_or_create: the signal and whether this call created it."""

    signal: AccountSignal
    created: bool


@dataclass(frozen=True)
class SignalInput:
    """One signal to record, before it is checked."""

    signal_type: str
    observed_at: datetime | None = None
    source: str = SYSTEM_SOURCE
    external_id: str = ""
    payload: dict = field(default_factory=dict)


def actor_label(actor) -> str:
    """How the ledger and the row name who recorded it: user:<id>, integration:<token id>, system:<component>."""
    if isinstance(actor, SystemActor):
        return ledger.system_actor(actor.component)
    if isinstance(actor, IntegrationToken):
        return f"integration:{actor.pk}"
    return ledger.user_actor(actor)


def is_from_outside(actor) -> bool:
    return not isinstance(actor, SystemActor)


def signal_problems(item: SignalInput, *, from_outside: bool, now: datetime) -> list[Reason]:
    """Everything wrong with a signal before it is written (pure; the import checks each row with it)."""
    problems = []
    if item.signal_type not in TAXONOMY:
        problems.append(Reason(UNKNOWN_SIGNAL_TYPE, f"{item.signal_type!r} is not a signal type; known types from "
                                                    f"outside: {', '.join(sorted(OUTSIDE_SIGNAL_TYPES))}."))
    elif from_outside and item.signal_type in SYSTEM_SIGNAL_TYPES:
        problems.append(Reason(SIGNAL_TYPE_RESERVED, f"{item.signal_type} is written only by revplan itself (the "
                                                     "execution spine's outcomes, what people did with its ideas)."))
    if not isinstance(item.source, str) or not SOURCE_PATTERN.fullmatch(item.source):
        problems.append(Reason(INVALID_SOURCE, "The source must be 1 to 64 letters, digits, '_', '.', ':' or '-', "
                                               "starting with a letter or digit."))
    elif from_outside and item.source.casefold() == SYSTEM_SOURCE:
        problems.append(Reason(INVALID_SOURCE, f"The source {SYSTEM_SOURCE!r} is revplan's own; name your system."))
    if not isinstance(item.external_id, str) or len(item.external_id) > MAX_EXTERNAL_ID_LENGTH or (
        item.external_id != item.external_id.strip() or not storable_text(item.external_id)
    ):
        problems.append(Reason(INVALID_EXTERNAL_ID, f"The external id must be text of at most {MAX_EXTERNAL_ID_LENGTH}"
                                                    " characters, without surrounding spaces."))
    problems.extend(payload_problems(item.payload))
    if item.observed_at is not None:
        if timezone.is_naive(item.observed_at):
            problems.append(Reason(INVALID_OBSERVED_AT, "observed_at must say its time zone."))
        elif item.observed_at > now + FUTURE_TOLERANCE:
            problems.append(Reason(OBSERVED_IN_FUTURE, f"observed_at {item.observed_at.isoformat()} is in the "
                                                       "future; a signal records what was observed."))
    return problems


def storable_text(text: str) -> bool:
    """PostgreSQL text holds no NUL, and UTF-8 no lone surrogate (JSON lets one write "\\ud800")."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _holds_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def payload_problems(payload) -> list[Reason]:
    if not isinstance(payload, dict):
        return [Reason(PAYLOAD_NOT_OBJECT, "The payload must be a JSON object.")]
    # First: measuring the size serialises the payload, which recurses once per level.
    if nests_deeper_than(payload, MAX_PAYLOAD_DEPTH):
        return [Reason(PAYLOAD_TOO_DEEP, f"The payload nests deeper than {MAX_PAYLOAD_DEPTH} levels.")]
    try:
        # UTF-8 bytes, as stored; a lone surrogate (JSON lets one write "\ud800") cannot be encoded
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError):
        return [Reason(PAYLOAD_NOT_JSON, "The payload must be plain JSON text (no NaN, Infinity or lone "
                                         "surrogates).")]
    if size > MAX_PAYLOAD_BYTES:
        return [Reason(PAYLOAD_TOO_LARGE, f"The payload is {size} bytes of JSON; at most {MAX_PAYLOAD_BYTES} are "
                                          "kept.")]
    if _holds_nul(payload):  # PostgreSQL's jsonb cannot store U+0000
        return [Reason(PAYLOAD_NOT_JSON, "The payload may not contain the NUL character (U+0000).")]
    return []


def refuse_if_invalid(problems: list[Reason]) -> None:
    if problems:
        raise ValidationFailed(problems[0].code, problems[0].detail, problems)


def signal_account(*, account_id: UUID, actor) -> Account:
    """The account a signal is about, as the actor may see it: another tenant's account does not exist
    (404), a VIEWER may not write (403). An integration token reaches only its own tenant's accounts."""
    account = Account.objects.filter(pk=account_id).first()
    if isinstance(actor, IntegrationToken):
        if account is None or account.tenant_id != actor.tenant_id:
            raise NotFound("NOT_FOUND", "The account does not exist.")
        return account
    if account is None:
        raise NotFound("NOT_FOUND", "The account does not exist.")
    if is_from_outside(actor):
        require_authority(Verb.RECORD_SIGNAL, user=actor, tenant_id=account.tenant_id, what="account")
    return account


def signal_record(
    *,
    account_id: UUID,
    signal_type: str,
    observed_at: datetime | None = None,
    payload: dict | None = None,
    source: str = SYSTEM_SOURCE,
    external_id: str = "",
    actor=None,
) -> RecordedSignal:
    """Record something observed about an account (a renewal committed, a support risk, an action's outcome).

    actor: a user (the API; RECORD_SIGNAL authority), an IntegrationToken (its own tenant only), or a
    SystemActor (revplan itself; None means SystemActor("system")). From outside, revplan's own types and
    source are refused and the signal is ledgered (SIGNAL_RECORDED, in the tenant's chain).

    Idempotent when the source gives an external id: the same (tenant, source, external_id) again returns
    the first signal and created=False — the unique constraint decides, so two concurrent calls make one
    row. The same id sent for another account or type is a 409: it is not the same signal.

    A signal that may meet an ACTIVE plan's objective makes the orchestrator look at that plan now: the tick
    only visits plans whose next_run_at is due, and a plan waiting for a person (a step PENDING_APPROVAL) has
    none, so without this a renewal committed meanwhile would go unnoticed until the plan expired.
    """
    actor = actor if actor is not None else SystemActor("system")
    now = timezone.now()
    item = SignalInput(signal_type=signal_type, observed_at=observed_at, source=source, external_id=external_id,
                       payload=payload if payload is not None else {})
    with transaction.atomic():
        account = signal_account(account_id=account_id, actor=actor)
        refuse_if_invalid(signal_problems(item, from_outside=is_from_outside(actor), now=now))
        row = SignalRow(account_id=account.id, tenant_id=account.tenant_id, item=item, recorded_by=actor_label(actor),
                        observed_at=item.observed_at or now)
        inserted = insert_signals([row], now=now)
        if not inserted:
            return RecordedSignal(existing_signal(row), created=False)
        signal = AccountSignal.objects.get(pk=inserted[0][0])
        woken_plan_ids = plans_wake(account_signal_types=[(account.id, signal_type)], now=now)
        if is_from_outside(actor):
            ledger.signal_recorded(signal, actor=actor_label(actor), account_name=account.name,
                                   woken_plan_ids=woken_plan_ids,
                                   token_name=actor.name if isinstance(actor, IntegrationToken) else "")
    return RecordedSignal(signal, created=True)


def outcome_signal_insert(*, account_id: UUID, tenant_id: UUID, signal_type: str, payload: dict,
                          observed_at: datetime, component: str) -> Callable[[str], tuple[str, list]]:
    """The execution spine's own record of an action's outcome (ACTION_EXECUTED, ACTION_FAILED), as an INSERT
    for the statement that writes the outcome itself (orchestrator.execution.leases.finish): `(condition) ->
    (sql, params)`, the row written only where `condition` (a WHERE clause) holds — the outcome was written.
    The type is revplan's own (nothing from outside to check), it has no external id (nothing to dedupe) and is
    no plan's objective (nothing to wake): none of signal_record's reads apply, and each step saves them."""
    if signal_type not in SYSTEM_SIGNAL_TYPES or any(
            signal_type in objective_signal_types_of_any_version(plan_type) for plan_type in PLAN_TYPES):
        raise ValueError(f"{signal_type} is not an outcome signal")
    item = SignalInput(signal_type=signal_type, observed_at=observed_at, payload=payload)
    row = SignalRow(account_id=account_id, tenant_id=tenant_id, item=item, observed_at=observed_at,
                    recorded_by=actor_label(SystemActor(component)))
    now = timezone.now()
    return lambda condition: insert_signals_statement([row], now=now, condition=condition)


@dataclass(frozen=True)
class SignalRow:
    """A checked signal, ready to insert."""

    account_id: UUID
    tenant_id: UUID
    item: SignalInput
    recorded_by: str
    observed_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.item.source, self.item.external_id)


def existing_signal(row: SignalRow) -> AccountSignal:
    """The signal already recorded under the row's key; a 409 when it is about something else."""
    signal = AccountSignal.objects.get(tenant_id=row.tenant_id, source=row.item.source,
                                       external_id=row.item.external_id)
    if (signal.account_id, signal.signal_type) != (row.account_id, row.item.signal_type):
        raise Conflict(EXTERNAL_ID_REUSED, f"{row.item.source} already sent {row.item.external_id!r} as "
                                           f"{signal.signal_type} for another account or of another type.")
    return signal


def insert_signals(rows: list[SignalRow], *, now: datetime) -> list[tuple[int, str, str]]:
    """INSERT … ON CONFLICT DO NOTHING in one statement: (id, source, external_id) of the rows that were new.

    A row whose key a concurrent transaction is inserting waits for it to commit, then is skipped, so the
    caller's next read finds that row (READ COMMITTED reads afresh each statement)."""
    if not rows:
        return []
    with connection.cursor() as cursor:
        cursor.execute(*insert_signals_statement(rows, now=now))
        return [tuple(found) for found in cursor.fetchall()]


def insert_signals_statement(rows: list[SignalRow], *, now: datetime, condition: str = "") -> tuple[str, list]:
    """insert_signals' statement (sql, params), writing only where `condition` (a WHERE clause) holds.

    The rows travel as one array per column (unnest), so a batch of 1,000 is 8 parameters, not 9,000 for
    the driver to splice."""
    columns = {
        "account_id": [row.account_id for row in rows],
        "tenant_id": [row.tenant_id for row in rows],
        "signal_type": [row.item.signal_type for row in rows],
        "payload": [json.dumps(row.item.payload, default=str) for row in rows],
        "observed_at": [row.observed_at for row in rows],
        "source": [row.item.source for row in rows],
        "external_id": [row.item.external_id for row in rows],
        "recorded_by": [row.recorded_by for row in rows],
    }
    sql = (
        f"INSERT INTO {AccountSignal._meta.db_table} (account_id, tenant_id, signal_type, payload, observed_at, "
        "created_at, source, external_id, recorded_by) "
        "SELECT account_id, tenant_id, signal_type, payload::jsonb, observed_at, %s, source, external_id, recorded_by "
        "FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], "
        "%s::text[]) AS given(account_id, tenant_id, signal_type, payload, observed_at, source, external_id, "
        f"recorded_by) {condition} "
        "ON CONFLICT DO NOTHING RETURNING id, source, external_id"
    )
    return sql, [now, *columns.values()]


def plans_wake(*, account_signal_types: Iterable[tuple[UUID, str]], now: datetime) -> list[str]:
    """Make the ACTIVE plans whose objective the signals may meet due now; their ids.

    One UPDATE per plan type: it waits for an advance holding a plan's row lock, so a concurrent advance
    cannot clear the wake-up."""
    woken = []
    pairs = list(account_signal_types)
    for plan_type in PLAN_TYPES:
        # A plan runs on the version it was approved with: the signals of any version may meet its objective.
        objective_signal_types = objective_signal_types_of_any_version(plan_type)
        account_ids = sorted({account_id for account_id, signal_type in pairs
                              if signal_type in objective_signal_types}, key=str)
        if not account_ids:
            continue
        table = RevenuePlan._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET next_run_at = %s WHERE account_id = ANY(%s) AND plan_type = %s "
                "AND plan_status = %s RETURNING id",
                [now, account_ids, plan_type, PlanStatus.ACTIVE.value],
            )
            woken.extend(str(plan_id) for (plan_id,) in cursor.fetchall())
    return sorted(woken)
