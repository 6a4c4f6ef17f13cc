"""A file of signals (CSV or JSON Lines) for one tenant: read and checked whole — one bad row and nothing is
imported, every bad line named — then recorded in batches, each one transaction with one ledger entry.

Columns (CSV header, or JSON keys): account_id or account_external_id, signal_type, observed_at (ISO 8601;
empty: now; without a zone: UTC), source, external_id (required: it makes a re-run of the file harmless),
payload (a JSON object; in CSV its JSON text, empty for none).
"""
import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from plans import ledger
from plans.authority import Verb
from plans.errors import NotFound, Reason, ValidationFailed
from plans.models import Account, AccountSignal, Tenant
from plans.services.common import SystemActor, require_authority
from plans.services.signals import (
    INVALID_EXTERNAL_ID,
    SignalInput,
    SignalRow,
    actor_label,
    insert_signals,
    plans_wake,
    signal_problems,
    storable_text,
)

FORMATS = ("csv", "jsonl")
COLUMNS = frozenset({"account_id", "account_external_id", "signal_type", "observed_at", "source", "external_id",
                     "payload"})
# 1,000 rows a statement: 9,000 parameters (PostgreSQL takes 65,535) and a ledger entry naming 1,000 ids.
BATCH_SIZE = 1000
IMPORT_INVALID = "IMPORT_INVALID"


@dataclass
class LineProblem:
    line: int
    detail: str


@dataclass
class ImportReport:
    """What an import did. A refused file: problems, nothing else. Otherwise taken and duplicate lines; refused
    lines are those whose external id was taken meanwhile for another account or type."""

    rows: int = 0
    taken: int = 0
    duplicate_lines: list[int] = field(default_factory=list)
    refused: list[LineProblem] = field(default_factory=list)
    problems: list[LineProblem] = field(default_factory=list)
    batches: int = 0


@dataclass(frozen=True)
class _Parsed:
    line: int
    fields: dict


def file_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ValidationFailed(IMPORT_INVALID, f"--format is one of {', '.join(FORMATS)}.")
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix == "csv":
        return "csv"
    raise ValidationFailed(IMPORT_INVALID, f"Cannot tell the format of {path.name} from its extension; "
                                           "pass --format csv or --format jsonl.")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _json(text: str):
    """Strict JSON: NaN and Infinity (which Python's json takes) are refused, as PostgreSQL would."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # nested thousands deep: a bad line like any other, not a crash
        raise ValueError("nested too deep to read") from None


def _read_csv(handle) -> Iterator[_Parsed | LineProblem]:
    reader = csv.DictReader(handle)
    try:
        yield from _csv_records(reader)
    except csv.Error as error:  # a field past csv's size limit, a quote left open ...: the rest cannot be read
        yield LineProblem(reader.line_num + 1, f"not readable as CSV from here on: {error}")


def _csv_records(reader: csv.DictReader) -> Iterator[_Parsed | LineProblem]:
    unknown = sorted(set(reader.fieldnames or ()) - COLUMNS)
    if unknown:
        yield LineProblem(1, f"unknown column(s): {', '.join(unknown)}")
        return
    line = 1
    for record in reader:
        start, line = line + 1, reader.line_num  # a quoted field may span lines: name the record's first
        if None in record:
            yield LineProblem(start, "more fields than the header names")
            continue
        payload_text = (record.get("payload") or "").strip()
        if payload_text:
            try:
                record["payload"] = _json(payload_text)
            except ValueError:
                yield LineProblem(start, "payload is not valid JSON")
                continue
        else:
            record["payload"] = {}
        yield _Parsed(start, record)


def _read_jsonl(handle) -> Iterator[_Parsed | LineProblem]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            record = _json(text)
        except ValueError:
            yield LineProblem(line, "not valid JSON")
            continue
        if not isinstance(record, dict):
            yield LineProblem(line, "not a JSON object")
            continue
        unknown = sorted(set(record) - COLUMNS)
        if unknown:
            yield LineProblem(line, f"unknown field(s): {', '.join(unknown)}")
            continue
        yield _Parsed(line, record)


def _observed_at(value, now: datetime) -> datetime:
    if value in (None, ""):
        return now
    if not isinstance(value, str):
        raise ValueError("observed_at is not a date-time")
    moment = parse_datetime(value.strip())
    if moment is None:
        day = parse_date(value.strip())
        if day is None:
            raise ValueError(f"observed_at {value!r} is not an ISO 8601 date-time")
        moment = datetime(day.year, day.month, day.day)
    return moment.replace(tzinfo=UTC) if timezone.is_naive(moment) else moment


def _text(record: dict, name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return value


def _check(parsed: list[_Parsed], *, tenant: Tenant, actor, now: datetime) -> tuple[list[SignalRow], list[int],
                                                                                      list[LineProblem]]:
    """The rows to insert (the first of each key), the lines that repeat an earlier line, and the problems."""
    by_id, by_external = _accounts(parsed, tenant)
    rows, lines, problems, first_of_key, repeats = [], [], [], {}, []
    label = actor_label(actor)
    for item in parsed:
        record = item.fields
        try:
            account_ref = _text(record, "account_id").strip()
            external_ref = _text(record, "account_external_id").strip()
            if not account_ref and not external_ref:
                raise ValueError("name the account by account_id or account_external_id")
            account = by_id.get(_uuid(account_ref)) if account_ref else by_external.get(external_ref)
            if account is None:
                raise ValueError(f"no account {account_ref or external_ref!r} in tenant {tenant.slug}")
            signal = SignalInput(signal_type=_text(record, "signal_type").strip(),
                                 observed_at=_observed_at(record.get("observed_at"), now),
                                 source=_text(record, "source").strip(), external_id=_text(record, "external_id"),
                                 payload=record.get("payload") if record.get("payload") is not None else {})
        except ValueError as error:
            problems.append(LineProblem(item.line, str(error)))
            continue
        reasons = signal_problems(signal, from_outside=True, now=now)
        if not signal.external_id:
            reasons.append(Reason(INVALID_EXTERNAL_ID, "external_id is required: it makes importing the same file "
                                                       "twice harmless"))
        if reasons:
            problems.append(LineProblem(item.line, "; ".join(f"{reason.code}: {reason.detail}" for reason in reasons)))
            continue
        row = SignalRow(account_id=account.id, tenant_id=tenant.id, item=signal, recorded_by=label,
                        observed_at=signal.observed_at)
        earlier = first_of_key.get(row.key)
        if earlier is None:
            first_of_key[row.key] = (item.line, row)
            rows.append(row)
            lines.append(item.line)
        elif (earlier[1].account_id, earlier[1].item.signal_type) != (row.account_id, signal.signal_type):
            problems.append(LineProblem(item.line, f"external id {signal.external_id!r} of {signal.source} is used "
                                                   f"on line {earlier[0]} for another account or signal type"))
        else:
            repeats.append(item.line)
    problems.extend(_reused_keys(first_of_key, tenant))
    return list(zip(lines, rows, strict=True)), repeats, problems


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def _accounts(parsed: list[_Parsed], tenant: Tenant) -> tuple[dict, dict]:
    ids, external_ids = set(), set()
    for item in parsed:
        value = item.fields.get("account_id")
        if isinstance(value, str) and _uuid(value.strip()):
            ids.add(_uuid(value.strip()))
        value = item.fields.get("account_external_id")
        if isinstance(value, str) and value.strip() and storable_text(value):
            external_ids.add(value.strip())
    accounts = Account.objects.filter(tenant=tenant).only("id", "external_id")
    by_id = {account.id: account for account in accounts.filter(id__in=ids)} if ids else {}
    by_external = ({account.external_id: account for account in accounts.filter(external_id__in=external_ids)}
                   if external_ids else {})
    return by_id, by_external


def _reused_keys(first_of_key: dict, tenant: Tenant) -> list[LineProblem]:
    """Keys already recorded for another account or type: the row is not the same signal."""
    problems = []
    keys = list(first_of_key)
    for start in range(0, len(keys), BATCH_SIZE):
        chunk = keys[start:start + BATCH_SIZE]
        found = AccountSignal.objects.filter(
            tenant=tenant, source__in={source for source, _ in chunk}, external_id__in={ext for _, ext in chunk}
        ).values_list("source", "external_id", "account_id", "signal_type")
        for source, external_id, account_id, signal_type in found:
            known = first_of_key.get((source, external_id))
            if known and (known[1].account_id, known[1].item.signal_type) != (account_id, signal_type):
                problems.append(LineProblem(known[0], f"external id {external_id!r} of {source} is already recorded "
                                                      f"as {signal_type} for another account or type"))
    return problems


def signals_import(*, tenant_slug: str, path: Path, fmt: str | None = None, actor=None, batch_size: int = BATCH_SIZE,
                   progress: Callable[[int], None] | None = None,
                   on_checked: Callable[[int], None] | None = None) -> ImportReport:
    """Import a file of signals into a tenant, as `actor`: a user with RECORD_SIGNAL authority in it, or the
    system (SystemActor("import_signals") when None). A file with a bad row imports nothing: the report's
    problems name each bad line. `on_checked(rows)` is told how many rows will be inserted, `progress(rows)` after each
    batch how many it handled."""
    actor = actor if actor is not None else SystemActor("import_signals")
    tenant = Tenant.objects.filter(slug=tenant_slug).first()
    if tenant is None:
        raise NotFound("NOT_FOUND", f"There is no tenant {tenant_slug!r}.")
    if not isinstance(actor, SystemActor):
        require_authority(Verb.RECORD_SIGNAL, user=actor, tenant_id=tenant.id, what="tenant")
    path = Path(path)
    fmt = file_format(path, fmt)
    now = timezone.now()
    report = ImportReport()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        items = list(_read_csv(handle) if fmt == "csv" else _read_jsonl(handle))
    report.problems = [item for item in items if isinstance(item, LineProblem)]
    parsed = [item for item in items if isinstance(item, _Parsed)]
    report.rows = len(parsed) + len(report.problems)
    rows, repeats, problems = _check(parsed, tenant=tenant, actor=actor, now=now)
    report.problems = sorted(report.problems + problems, key=lambda problem: problem.line)
    if report.problems:
        return report
    report.duplicate_lines.extend(repeats)
    if on_checked:
        on_checked(len(rows) + len(repeats))
    if progress and repeats:
        progress(len(repeats))
    for start in range(0, len(rows), batch_size):
        _import_batch(rows[start:start + batch_size], tenant=tenant, actor=actor, file_name=path.name,
                      number=report.batches + 1, report=report)
        report.batches += 1
        if progress:
            progress(len(rows[start:start + batch_size]))
    report.duplicate_lines.sort()
    return report


def _import_batch(batch: list[tuple[int, SignalRow]], *, tenant: Tenant, actor, file_name: str, number: int,
                  report: ImportReport) -> None:
    now = timezone.now()
    with transaction.atomic():
        inserted = insert_signals([row for _, row in batch], now=now)
        taken = {(source, external_id): signal_id for signal_id, source, external_id in inserted}
        duplicates, refused = [], []
        left_out = [(line, row) for line, row in batch if row.key not in taken]
        existing = {}
        if left_out:
            existing = {(source, ext): (account_id, signal_type) for source, ext, account_id, signal_type in
                        AccountSignal.objects.filter(
                            tenant=tenant, source__in={row.item.source for _, row in left_out},
                            external_id__in={row.item.external_id for _, row in left_out},
                        ).values_list("source", "external_id", "account_id", "signal_type")}
        for line, row in left_out:
            if existing.get(row.key) == (row.account_id, row.item.signal_type):
                duplicates.append(line)
            else:  # recorded meanwhile (after the check) for another account or type
                refused.append(LineProblem(line, f"external id {row.item.external_id!r} of {row.item.source} was "
                                                 "recorded meanwhile for another account or type"))
        woken = plans_wake(account_signal_types=[(row.account_id, row.item.signal_type) for _, row in batch
                                                 if row.key in taken], now=now)
        counts = {"taken": len(taken), "duplicate": len(duplicates), "refused": len(refused)}
        ledger.signals_imported(tenant.id, actor=actor_label(actor), file_name=file_name, batch=number,
                                lines=(batch[0][0], batch[-1][0]), counts=counts,
                                signal_ids=sorted(taken.values()), woken_plan_ids=woken)
    report.taken += len(taken)
    report.duplicate_lines.extend(duplicates)
    report.refused.extend(refused)
