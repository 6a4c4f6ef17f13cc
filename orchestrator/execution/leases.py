"""Leases on an ActionIntent (DESIGN §5): the claim that makes one worker its executor, its renewal before
every try, the tries it records and the outcome it writes — each conditional on the claim's token, so a
worker that stalled past its lease and lost the claim can neither record a try nor an outcome next to
the one that took over. The execution service (service.py) decides; these are its writes."""
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from orchestrator.execution.models import ActionIntent, ExecutionAttempt, IntentStatus
from revplan.rows import insert_columns, insert_values, update_sql, update_values

logger = logging.getLogger(__name__)

# A delivery is counted when it may start the attempt: the first one, or one that finds the last start
# abandoned (EXECUTING past its lease: that worker died). A PENDING intent claimed again (a kill switch
# handed it back) is not a death. Copies of a message that arrive while a live worker holds the claim
# do not get here at all, so a few copies landing at once never fail a healthy attempt as WORKER_LOST.
_CLAIM = f"""
UPDATE orchestrator_actionintent
SET status = '{IntentStatus.EXECUTING}', lease_token = %(token)s, lease_expires_at = %(lease)s, started_at = %(now)s,
    deliveries = deliveries + CASE WHEN status = '{IntentStatus.EXECUTING}' OR deliveries = 0 THEN 1 ELSE 0 END
WHERE id = %(id)s AND (status = '{IntentStatus.PENDING}'
                       OR (status = '{IntentStatus.EXECUTING}' AND lease_expires_at < %(now)s))
RETURNING attempts, connector, deliveries
"""


@dataclass(frozen=True)
class Claim:
    intent_id: UUID
    token: UUID
    deliveries: int = 1
    # The try already counted on the row, with its connector and a lease just taken (0: none), which
    # therefore needs no renewal: 1 for an intent created claimed; the next try for a claim whose
    # first renewal was written in the claim's own transaction (ExecutionService.execute).
    counted: int = 0


def lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.REVPLAN_EXECUTION_LEASE_SECONDS)


def claim(intent: ActionIntent, *, now: datetime) -> Claim | None:
    """PENDING, or EXECUTING whose lease ran out (its worker died): take it with a fresh token.

    On success `intent` is brought up to the claimed row: the claim sets status, lease and start,
    and RETURNING hands back what a worker that died since `intent` was read may have changed.
    """
    token = uuid.uuid4()
    lease_expires_at = lease_until(now)
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM, {"id": intent.pk, "token": token, "lease": lease_expires_at, "now": now})
        row = cursor.fetchone()
    if row is None:
        return None
    intent.status, intent.lease_token, intent.lease_expires_at, intent.started_at = (
        IntentStatus.EXECUTING, token, lease_expires_at, now)
    intent.attempts, intent.connector, intent.deliveries = row
    return Claim(intent.pk, token, deliveries=intent.deliveries)


def renew(held: Claim, *, attempts: int, connector: str, now: datetime) -> bool:
    """Before a try: count it and extend the lease; False when the claim has moved on."""
    return bool(
        ActionIntent.objects.filter(pk=held.intent_id, lease_token=held.token, status=IntentStatus.EXECUTING)
        .update(attempts=attempts, connector=connector, lease_expires_at=lease_until(now))
    )


def release(held: Claim, *, tries_made: int) -> bool:
    """Hand the claim back: the intent PENDING again, with the number of tries it really made (one created
    claimed counts its first try before making it), to be sent again later. Conditional on the claim."""
    return bool(ActionIntent.objects.filter(pk=held.intent_id, lease_token=held.token, status=IntentStatus.EXECUTING)
                .update(status=IntentStatus.PENDING, lease_token=None, lease_expires_at=None, attempts=tries_made))


def attempt_row(held: Claim, number, delay, started_at, outcome, error, *, now: datetime,
                external_ids=None) -> ExecutionAttempt:
    return ExecutionAttempt(
        intent_id=held.intent_id, number=number, delay_before_seconds=delay, started_at=started_at,
        finished_at=now, outcome=outcome, error=error[:2000], external_ids=external_ids or {},
    )


def record_try(held: Claim, number, delay, started_at, outcome, error, *, now: datetime) -> None:
    """A try that did not end the execution (a transient failure), in its own transaction."""
    try:
        with transaction.atomic():
            # Only the claim's holder records a try: a worker that stalled past its lease and
            # lost the claim must not add a second outcome next to the takeover's.
            is_held = ActionIntent.objects.select_for_update().filter(
                pk=held.intent_id, lease_token=held.token, status=IntentStatus.EXECUTING
            ).exists()
            if not is_held:
                logger.warning("stale worker's attempt not recorded; the claim had moved on",
                               extra={"intent_id": str(held.intent_id), "try": number, "outcome": outcome})
                return
            attempt_row(held, number, delay, started_at, outcome, error, now=now).save(force_insert=True)
    except IntegrityError:
        # A worker that took over already recorded this try; its record stands.
        logger.warning("attempt already recorded by another worker", extra={"intent_id": str(held.intent_id),
                                                                            "try": number})


def finish(intent: ActionIntent, held: Claim | None, *, now: datetime, last_try: ExecutionAttempt | None = None,
           writes: Iterable[Callable[[str], tuple[str, list]]] = (), **fields) -> bool:
    """Conditional on the claim (or, with none, on the intent still being PENDING): a stale worker's
    result is refused (returns False). On success `intent` gets the written fields: while the claim
    held, nobody else wrote the row.

    `last_try`: the try that ended the execution, and `writes`, inserts of what the outcome records
    (`(condition) -> (sql, params)`: an INSERT … SELECT made only where the WHERE clause `condition` holds),
    written by the same statement only where the finish is: a stale worker's try is never recorded next
    to the takeover's. Should a takeover have recorded this try already, its record stands (ON CONFLICT
    DO NOTHING)."""
    match = {"id": intent.pk, "lease_token": held.token, "status": IntentStatus.EXECUTING} if held else {
        "id": intent.pk, "status": IntentStatus.PENDING}
    fields = {"finished_at": now, "lease_token": None, "lease_expires_at": None, **fields}
    sql = update_sql(ActionIntent, tuple(fields), where=tuple(match))
    ctes = [f"finished AS ({sql} RETURNING 1)"]
    params = [*update_values(ActionIntent, fields), *update_values(ActionIntent, match)]
    if last_try is not None:
        attempt_fields, columns, values = insert_columns(ExecutionAttempt)
        ctes.append(f"recorded AS (INSERT INTO {ExecutionAttempt._meta.db_table} ({columns}) SELECT {values} "
                    "FROM finished ON CONFLICT DO NOTHING)")
        params += insert_values(attempt_fields, last_try)
    for number, write in enumerate(writes):
        write_sql, write_params = write("WHERE EXISTS (SELECT 1 FROM finished)")
        ctes.append(f"write_{number} AS ({write_sql})")
        params += write_params
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(ctes)} SELECT count(*) FROM finished", params)
        written = cursor.fetchone()[0]
    if not written:
        return False
    for name, value in fields.items():
        setattr(intent, name, value)
    return True
