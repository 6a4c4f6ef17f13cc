"""manage.py import_signals and services.signals_import: a CSV or JSON Lines file checked whole (one bad row
and nothing is imported, the line named), then recorded in batches with one ledger entry each."""
import csv
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from plans import ledger, services
from plans.models import AccountSignal, EventType, PlanLedgerEntry, PlanStatus, RevenuePlan
from tests.factories import AccountFactory, make_plan

HEADER = ["account_id", "account_external_id", "signal_type", "observed_at", "source", "external_id", "payload"]


def write_csv(path, rows) -> str:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_signals", *args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def import_entries(tenant) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(tenant=tenant, event_type=EventType.SIGNALS_IMPORTED)
                .order_by("chain_seq"))


@pytest.fixture
def rows(world):
    second = AccountFactory(tenant=world.tenant, external_id="crm-acct-2", owner=world.seller)
    return [
        {"account_id": str(world.account.id), "signal_type": "RENEWAL_COMMITTED", "observed_at": "2026-11-02T10:00:00Z",
         "source": "crm", "external_id": "e1", "payload": json.dumps({"deal": "d-1", "amount": 1200})},
        {"account_external_id": second.external_id, "signal_type": "SUPPORT_RISK", "observed_at": "2026-11-03",
         "source": "zendesk", "external_id": "t-77", "payload": ""},
        {"account_external_id": second.external_id, "signal_type": "NO_RESPONSE", "observed_at": "",
         "source": "crm", "external_id": "e2", "payload": "{}"},
    ]


def test_a_good_csv_is_imported_in_batches_ledgered_and_wakes_the_plans_it_may_complete(world, rows, tmp_path):
    # given
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    path = write_csv(tmp_path / "signals.csv", rows)

    # when
    out, _ = run(path, "--tenant", world.tenant.slug, "--batch-size", "2")

    # then
    assert "taken: 3" in out
    assert "duplicate: 0" in out
    assert "refused: 0" in out
    signals = {signal.external_id: signal for signal in AccountSignal.objects.all()}
    assert set(signals) == {"e1", "t-77", "e2"}
    assert signals["e1"].payload == {"deal": "d-1", "amount": 1200}
    assert signals["e1"].recorded_by == "system:import_signals"
    assert signals["t-77"].observed_at.isoformat() == "2026-11-03T00:00:00+00:00"
    assert {signal.tenant_id for signal in signals.values()} == {world.tenant.id}
    first, second = import_entries(world.tenant)
    assert (first.data["counts"], first.data["first_line"], first.data["last_line"]) == (
        {"taken": 2, "duplicate": 0, "refused": 0}, 2, 3)
    assert second.data["counts"] == {"taken": 1, "duplicate": 0, "refused": 0}
    assert sorted(first.data["signal_ids"] + second.data["signal_ids"]) == sorted(s.pk for s in signals.values())
    assert first.data["woken_plan_ids"] == [str(active.id)]
    assert RevenuePlan.objects.get(pk=active.pk).next_run_at is not None
    assert ledger.verify_ledger(tenant_id=world.tenant.id).ok


def test_a_good_jsonl_file_is_imported_and_a_second_run_counts_duplicates(world, rows, tmp_path):
    for row in rows:
        row["payload"] = json.loads(row["payload"] or "{}")
    rows.append(dict(rows[0]))  # the same signal twice in the file
    path = write_jsonl(tmp_path / "signals.jsonl", rows)

    out, _ = run(path, "--tenant", world.tenant.slug)
    assert "taken: 3" in out
    assert "duplicate: 1 (lines 4)" in out

    again, _ = run(path, "--tenant", world.tenant.slug, "--as", world.seller.username)
    assert "taken: 0" in again
    assert "duplicate: 4 (lines 1, 2, 3, 4)" in again
    assert AccountSignal.objects.count() == 3
    assert import_entries(world.tenant)[-1].actor == f"user:{world.seller.pk}"


@pytest.mark.parametrize(("bad", "says"), [
    ({"signal_type": "ACTION_EXECUTED"}, "SIGNAL_TYPE_RESERVED"),
    ({"signal_type": "MAYBE"}, "UNKNOWN_SIGNAL_TYPE"),
    ({"payload": "{not json"}, "payload is not valid JSON"),
    ({"payload": '{"score": NaN}'}, "payload is not valid JSON"),
    ({"payload": '{"note": "a\\u0000b"}'}, "PAYLOAD_NOT_JSON"),
    ({"account_id": "", "account_external_id": "a\x00b"}, "no account"),
    ({"external_id": "e\x00"}, "INVALID_EXTERNAL_ID"),
    ({"payload": json.dumps({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}})}, "PAYLOAD_TOO_DEEP"),
    ({"account_id": "", "account_external_id": "nobody"}, "no account 'nobody'"),
    ({"external_id": ""}, "external_id is required"),
    ({"observed_at": "yesterday"}, "not an ISO 8601"),
    ({"source": "system"}, "INVALID_SOURCE"),
    ({"payload": '{"a": ' + "[" * 5_000 + "]" * 5_000 + "}"}, "payload is not valid JSON"),
    ({"payload": '{"a": ' + "[" * 400 + "]" * 400 + "}"}, "PAYLOAD_TOO_DEEP"),
])
def test_a_file_with_one_bad_row_imports_nothing_and_names_the_line(world, rows, tmp_path, bad, says):
    rows[1] = {**rows[1], **bad}
    path = write_csv(tmp_path / "signals.csv", rows)

    with pytest.raises(CommandError) as refused:
        run(path, "--tenant", world.tenant.slug)

    assert "nothing imported: 1 bad line(s) of 3 row(s): 3" in str(refused.value)
    report = services.signals_import(tenant_slug=world.tenant.slug, path=path)
    assert [problem.line for problem in report.problems] == [3]
    assert says in report.problems[0].detail
    assert not AccountSignal.objects.exists()
    assert not import_entries(world.tenant)


def test_an_external_id_already_recorded_for_another_account_makes_the_file_bad(world, rows, tmp_path):
    services.signal_record(account_id=AccountFactory(tenant=world.tenant).id, signal_type="SUPPORT_RISK",
                           source="crm", external_id="e2", actor=world.seller)
    path = write_csv(tmp_path / "signals.csv", rows)

    report = services.signals_import(tenant_slug=world.tenant.slug, path=path)

    assert [problem.line for problem in report.problems] == [4]
    assert AccountSignal.objects.count() == 1


def test_another_tenants_account_is_not_found_and_the_tenant_is_required(world, other_world, rows, tmp_path):
    rows[0]["account_id"] = str(other_world.account.id)
    path = write_csv(tmp_path / "signals.csv", rows)
    report = services.signals_import(tenant_slug=world.tenant.slug, path=path)
    assert [problem.line for problem in report.problems] == [2]
    with pytest.raises(CommandError):
        run(path, "--tenant", "no-such-tenant")
    with pytest.raises(CommandError):
        call_command("import_signals", path)


def test_the_format_comes_from_the_extension_or_the_option(world, rows, tmp_path):
    path = write_csv(tmp_path / "signals.txt", rows)
    with pytest.raises(CommandError, match="--format"):
        run(path, "--tenant", world.tenant.slug)
    out, _ = run(path, "--tenant", world.tenant.slug, "--format", "csv")
    assert "taken: 3" in out


def test_a_viewer_may_not_import(world, rows, tmp_path):
    path = write_csv(tmp_path / "signals.csv", rows)
    with pytest.raises(CommandError):
        run(path, "--tenant", world.tenant.slug, "--as", world.viewer.username)
    assert not AccountSignal.objects.exists()


def test_observed_at_in_the_future_is_a_bad_row(world, rows, tmp_path):
    rows[2]["observed_at"] = (timezone.now() + timedelta(days=2)).isoformat()
    report = services.signals_import(tenant_slug=world.tenant.slug, path=write_csv(tmp_path / "s.csv", rows))
    assert [problem.line for problem in report.problems] == [4]


def test_a_file_csv_cannot_read_imports_nothing_and_says_where(world, rows, tmp_path):
    path = write_csv(tmp_path / "signals.csv", rows)
    with open(path, "a") as handle:
        handle.write(f'{world.account.id},,SUPPORT_RISK,,crm,e9,"{"x" * 200_000}"\n')
    report = services.signals_import(tenant_slug=world.tenant.slug, path=path)
    assert [problem.line for problem in report.problems] == [5]
    assert "not readable as CSV" in report.problems[0].detail
    assert not AccountSignal.objects.exists()


def test_text_postgresql_cannot_store_is_a_bad_line_not_a_crash(world, tmp_path):
    rows = [{"account_external_id": "x\ud800", "signal_type": "SUPPORT_RISK", "source": "crm", "external_id": "a"},
            {"account_id": str(world.account.id), "signal_type": "SUPPORT_RISK", "source": "crm",
             "external_id": "b\ud800"}]
    path = tmp_path / "signals.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))  # ASCII JSON with "\ud800" escapes
    report = services.signals_import(tenant_slug=world.tenant.slug, path=path)
    assert [problem.line for problem in report.problems] == [1, 2]
    assert not AccountSignal.objects.exists()
