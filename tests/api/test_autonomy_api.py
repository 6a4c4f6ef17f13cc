"""The autonomy control API: settings and budgets, kill switches, timeline, action why, ledger export."""
import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.autonomy.models import ActionTypeAutonomy, TenantAutonomy
from orchestrator.execution.models import ActionIntent
from plans.models import EventType, KillSwitch, Membership, PlanLedgerEntry, PlanStatus, Role
from tests.api.helpers import assert_error, client_for
from tests.factories import allow_autopilot, make_plan
from tests.orchestrator.test_engine import BRIEF, run_until_quiet

pytestmark = pytest.mark.django_db

SETTINGS, KILL_SWITCHES, TIMELINE, EXPORT = (
    "/api/v1/autonomy/", "/api/v1/kill-switches/", "/api/v1/autopilot/timeline/", "/api/v1/ledger/export/")


def action_type_url(action_type: str) -> str:
    return f"/api/v1/autonomy/action-types/{action_type}/"


def ledger_count() -> int:
    return PlanLedgerEntry.objects.count()


def test_any_member_reads_the_settings_with_defaults_and_todays_use(world):
    body = client_for(world.viewer).get(SETTINGS).json()
    assert (body["tenant_id"], body["opted_in"], body["max_per_account_per_day"]) == (str(world.tenant.id), False, 3)
    assert {row["action_type"]: (row["mode"], row["max_per_day"], row["used_today"]) for row in body["action_types"]} \
        == {action_type: ("APPROVAL_REQUIRED", 10, 0)
            for action_type in ("ESCALATE_SUPPORT_RISK", "PREP_RENEWAL_BRIEF", "REQUEST_RENEWAL_MEETING")}


def test_an_admin_opts_in_sets_a_mode_and_budgets_and_each_change_is_ledgered(world):
    client = client_for(world.admin)
    response = client.patch(SETTINGS, {"opted_in": True, "max_per_account_per_day": 5}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["opted_in"], response.json()["max_per_account_per_day"]) == (True, 5)
    assert response.json()["opted_in_by"] == world.admin.username
    response = client.patch(action_type_url(BRIEF), {"mode": "AUTO_EXECUTE", "max_per_day": 7}, format="json")
    assert response.status_code == 200, response.content
    brief = next(row for row in response.json()["action_types"] if row["action_type"] == BRIEF)
    assert (brief["mode"], brief["max_per_day"], brief["updated_by"]) == ("AUTO_EXECUTE", 7, f"user:{world.admin.pk}")
    reasons = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.AUTONOMY_CHANGED)
    assert sorted(reasons.values_list("reason_code", flat=True)) == [
        "ACTION_TYPE_AUTONOMY_CHANGED", "LIMIT_CHANGED", "OPTED_IN"]


@pytest.mark.parametrize(("url", "body", "status", "code"), [
    (SETTINGS, {"opted_in": "maybe"}, 400, "VALIDATION_ERROR"),
    (SETTINGS, {"max_per_account_per_day": -1}, 400, "VALIDATION_ERROR"),
    (SETTINGS, {"max_per_account_per_day": "lots"}, 400, "VALIDATION_ERROR"),
    (action_type_url(BRIEF), {"mode": "YOLO"}, 400, "VALIDATION_ERROR"),
    (action_type_url(BRIEF), {"max_per_day": 10**9}, 400, "VALIDATION_ERROR"),
    (action_type_url("SEND_FLOWERS"), {"mode": "DISABLED"}, 400, "VALIDATION_ERROR"),
])
def test_bad_settings_are_refused_and_change_nothing(world, url, body, status, code):
    before = ledger_count()
    assert_error(client_for(world.admin).patch(url, body, format="json"), status, code)
    assert not TenantAutonomy.objects.exists()
    assert not ActionTypeAutonomy.objects.exists()
    assert ledger_count() == before


def test_only_tenant_admins_write_and_other_tenants_do_not_exist(world, other_world):
    before = ledger_count()
    for user in (world.viewer, world.seller, world.approver):
        assert_error(client_for(user).patch(SETTINGS, {"opted_in": True}, format="json"), 403, "NOT_ALLOWED")
        assert_error(client_for(user).patch(action_type_url(BRIEF), {"mode": "AUTO_EXECUTE"}, format="json"),
                     403, "NOT_ALLOWED")
    other_tenant = f"?tenant={world.tenant.id}"
    assert_error(client_for(other_world.admin).get(SETTINGS + other_tenant), 404, "NOT_FOUND")
    assert_error(client_for(other_world.admin).patch(SETTINGS + other_tenant, {"opted_in": True}, format="json"),
                 404, "NOT_FOUND")
    assert_error(client_for(world.admin).get(SETTINGS + "?tenant=not-a-uuid"), 400, "VALIDATION_ERROR")
    assert not TenantAutonomy.objects.exists()
    assert ledger_count() == before


def test_a_member_of_two_tenants_must_name_one(world, other_world):
    Membership.objects.create(user=world.admin, tenant=other_world.tenant, role=Role.VIEWER)
    assert_error(client_for(world.admin).get(SETTINGS), 400, "TENANT_REQUIRED")
    body = client_for(world.admin).get(f"{SETTINGS}?tenant={other_world.tenant.id}").json()
    assert body["tenant_id"] == str(other_world.tenant.id)
    # an admin in one tenant is only a viewer in the other
    assert_error(client_for(world.admin).patch(f"{SETTINGS}?tenant={other_world.tenant.id}", {"opted_in": True},
                                               format="json"), 403, "NOT_ALLOWED")


def test_kill_switches_are_read_by_members_and_flipped_by_admins(world):
    body = client_for(world.seller).get(KILL_SWITCHES).json()
    assert (body["global_engaged"], body["switches"]) == (False, [])
    assert_error(client_for(world.seller).post(KILL_SWITCHES, {"engaged": True, "reason": "x"}, format="json"),
                 403, "NOT_ALLOWED")
    assert_error(client_for(world.admin).post(KILL_SWITCHES, {"engaged": True, "reason": "x", "action_type": "NOPE"},
                                             format="json"), 400, "VALIDATION_ERROR")
    assert_error(client_for(world.admin).post(KILL_SWITCHES, {"engaged": "yes please"}, format="json"),
                 400, "VALIDATION_ERROR")
    assert not KillSwitch.objects.exists()
    response = client_for(world.admin).post(KILL_SWITCHES, {"engaged": True, "reason": "CRM outage",
                                                           "action_type": BRIEF}, format="json")
    assert response.status_code == 200, response.content
    [switch] = response.json()["switches"]
    assert (switch["action_type"], switch["engaged"], switch["reason"]) == (BRIEF, True, "CRM outage")
    assert PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.KILL_SWITCH_FLIPPED).count() == 1


def autopilot_run(world):
    """One brief the system ran on its own and one a person approved."""
    allow_autopilot(world.tenant, BRIEF)
    auto = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,),
                     approved_by=world.approver)
    run_until_quiet(auto.id)
    return ActionIntent.objects.get(plan=auto)


def test_the_timeline_lists_what_autopilot_did_and_nothing_a_person_approved(world, other_world):
    intent = autopilot_run(world)
    ActionIntent.objects.create(tenant=world.tenant, account=world.account, action_type=BRIEF, approved_by=world.seller,
                                expires_at=timezone.now() + timedelta(hours=1), effect_key="manual")
    body = client_for(world.viewer).get(TIMELINE).json()
    assert body["count"] == 1
    [item] = body["results"]
    assert (item["intent_id"], item["status"], item["policy_version"]) == (str(intent.id), "SUCCEEDED",
                                                                          "auto-approval-v1")
    assert item["summary"] == f"Autopilot did {BRIEF} for {world.account.name}."
    assert client_for(other_world.viewer).get(TIMELINE).json()["count"] == 0


def test_action_why_says_what_it_knew_and_which_policy_allowed_it(world, other_world):
    intent = autopilot_run(world)
    response = client_for(world.viewer).get(f"/api/v1/actions/{intent.id}/why/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["allowed_by"] == "policy auto-approval-v1 allowed it on its own"
    assert (body["decision"]["decision"], body["decision"]["reason"]) == ("AUTO_EXECUTE", "AUTONOMY_ALLOWED")
    assert (body["knew"]["mode"], body["knew"]["opted_in"], body["knew"]["risk_level"]) == ("AUTO_EXECUTE", True, "LOW")
    assert [entry["event_type"] for entry in body["entries"]] == ["STEP_ATTEMPT_STARTED", "ACTION_EXECUTED"]
    assert [(t["number"], t["outcome"]) for t in body["try_history"]] == [(1, "SUCCEEDED")]
    assert_error(client_for(other_world.admin).get(f"/api/v1/actions/{intent.id}/why/"), 404, "NOT_FOUND")


def test_the_export_streams_the_tenants_ledger_as_json_lines_or_csv(world, other_world):
    autopilot_run(world)
    autopilot_run(other_world)
    ours = PlanLedgerEntry.objects.filter(tenant=world.tenant).order_by("occurred_at", "id")
    response = client_for(world.admin).get(EXPORT)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/jsonl"
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [line["entry_id"] for line in lines] == [entry.id for entry in ours]
    assert {line["tenant_id"] for line in lines} == {str(world.tenant.id)}
    assert lines[0]["entry_hash"] == ours[0].entry_hash
    assert lines[0]["data"] == ours[0].data

    response = client_for(world.admin).get(EXPORT + "?as=csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(row["entry_id"]) for row in rows] == [entry.id for entry in ours]
    assert json.loads(rows[-1]["data"]) == ours.last().data

    response = client_for(world.admin).get(EXPORT + "?as=csv", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"

    middle = ours[len(ours) // 2].occurred_at
    response = client_for(world.admin).get(EXPORT, {"from": middle.isoformat()})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == ours.filter(occurred_at__gte=middle).count() < len(ours)


def test_the_export_is_for_tenant_admins_and_refuses_bad_ranges(world):
    assert_error(client_for(world.approver).get(EXPORT), 403, "NOT_ALLOWED")
    assert_error(client_for(world.admin).get(EXPORT, {"from": "yesterday"}), 400, "VALIDATION_ERROR")
    assert_error(client_for(world.admin).get(EXPORT, {"as": "xml"}), 400, "VALIDATION_ERROR")
