"""Policy backtesting on a seeded history of 10,000 decisions: the report matches a brute-force recomputation."""
import json
import random
import uuid
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import QuerySet
from django.utils import timezone

from orchestrator.autonomy import backtest
from orchestrator.autonomy.models import ActionTypeAutonomy, TenantAutonomy
from orchestrator.autonomy.policy import Decision, StepFacts, decide
from plans.models import EventType, PlanLedgerEntry, PlanStatus
from tests.api.helpers import assert_error, client_for
from tests.factories import AccountFactory, make_plan

pytestmark = pytest.mark.django_db
BRIEF, MEETING, ESCALATE = "PREP_RENEWAL_BRIEF", "REQUEST_RENEWAL_MEETING", "ESCALATE_SUPPORT_RISK"
DAYS = 20


def seed_decisions(world, count: int, *, plans: int = 40, seed: int = 7) -> tuple:
    """`count` recorded step decisions over DAYS days on `plans` plans (one account each), as the engine writes
    them (STEP_ATTEMPT_STARTED or STEP_AWAITING_APPROVAL with data.autonomy_decision); returns the window."""
    rng = random.Random(seed)
    plan_rows = [make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller),
                           status=PlanStatus.COMPLETED, action_types=(BRIEF,)) for _ in range(plans)]
    start = (timezone.now() - timedelta(days=DAYS + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    batch, first_attempts = [], {}
    for index in range(count):
        plan = plan_rows[index % plans]
        facts = StepFacts(action_type=rng.choice([BRIEF, BRIEF, MEETING, ESCALATE]),
                          risk_level=rng.choice(["LOW", "LOW", "MEDIUM", "HIGH"]), constraints=plan.constraints,
                          mode=rng.choice(["APPROVAL_REQUIRED", "AUTO_EXECUTE", "SHADOW"]),
                          opted_in=rng.random() < 0.7, budget_left=rng.random() < 0.9,
                          approved_by_id=world.seller.pk if rng.random() < 0.2 else None)
        decision = decide(facts)
        started = decision.decision == Decision.AUTO_EXECUTE or facts.approved_by_id is not None
        # a retry: the next attempt of the plan's last first attempt, when there is one; else a first attempt
        retry_of = first_attempts.pop(plan.id, None) if started and rng.random() < 0.25 else None
        attempt = 2 if retry_of else 1
        step_id = retry_of or uuid.uuid4()
        if started and attempt == 1:
            first_attempts[plan.id] = step_id
        data = {"attempt": attempt, "autonomy_decision": {**decision.as_dict(), "facts": facts.as_dict()}}
        if started:
            data["intent_id"] = str(uuid.uuid4())
        batch.append(PlanLedgerEntry(
            tenant_id=world.tenant.id, plan_id=plan.id, step_id=step_id,
            event_type=EventType.STEP_ATTEMPT_STARTED if started else EventType.STEP_AWAITING_APPROVAL,
            actor="system:orchestrator", reason_code=decision.reason, explanation=decision.explanation, data=data,
            occurred_at=start + timedelta(seconds=index * DAYS * 86400 // count), chain_seq=1000 + index // plans,
            prev_hash="0" * 64, entry_hash=uuid.uuid4().hex * 2))
    # The manager refuses bulk writes (one append at a time in production); a test's set-up may.
    QuerySet(model=PlanLedgerEntry).bulk_create(batch, batch_size=5000)
    return start, start + timedelta(days=DAYS + 1)


CANDIDATE = {"opted_in": True, "max_per_account_per_day": 4,
             "action_types": {BRIEF: {"mode": "AUTO_EXECUTE", "max_per_day": 25}, MEETING: {"mode": "DISABLED"}}}


def brute_force(world, start, end, candidate: dict, *, default_type_budget: int) -> dict:
    """The same replay, written the plain way: every decision in a list, budgets in one dict for the window."""
    entries = sorted(PlanLedgerEntry.objects.filter(tenant_id=world.tenant.id, occurred_at__gte=start,
                                                    occurred_at__lt=end).select_related("plan"),
                     key=lambda entry: (entry.occurred_at, entry.id))
    def candidate_facts(recorded):
        facts = StepFacts(**recorded["facts"])
        override = candidate["action_types"].get(facts.action_type, {})
        return replace(facts, mode=override.get("mode", facts.mode), opted_in=candidate["opted_in"], budget_left=True)

    started = {(entry.step_id, entry.data["attempt"]): entry for entry in entries
               if entry.event_type == EventType.STEP_ATTEMPT_STARTED}
    used, before, after, changes, exhausted = Counter(), Counter(), Counter(), Counter(), set()
    for entry in entries:
        recorded = entry.data["autonomy_decision"]
        facts = candidate_facts(recorded)
        decision = decide(facts)
        day = entry.occurred_at.date()
        previous = started.get((entry.step_id, entry.data["attempt"] - 1))
        retry_of_autonomous = previous is not None and decide(
            candidate_facts(previous.data["autonomy_decision"])).decision == Decision.AUTO_EXECUTE
        if decision.decision == Decision.AUTO_EXECUTE and not retry_of_autonomous:
            override = candidate["action_types"].get(facts.action_type, {})
            type_limit = override.get("max_per_day", default_type_budget)
            account_key, type_key = (day, entry.plan.account_id), (day, facts.action_type)
            if used[type_key] >= type_limit:
                exhausted.add((day, "action_type", facts.action_type, None))
                decision = decide(replace(facts, budget_left=False))
            elif used[account_key] >= candidate["max_per_account_per_day"]:
                exhausted.add((day, "account", facts.action_type, entry.plan.account_id))
                decision = decide(replace(facts, budget_left=False))
            else:
                used[account_key] += 1
                used[type_key] += 1
        before[recorded["decision"]] += 1
        after[str(decision.decision)] += 1
        if recorded["decision"] != decision.decision:
            changes[f"{recorded['decision']} -> {decision.decision}"] += 1
    return {"decisions": len(entries), "before": dict(before), "after": dict(after), "by_change": dict(changes),
            "exhausted": exhausted}


def test_the_report_on_10000_decisions_matches_a_brute_force_recomputation(world):
    start, end = seed_decisions(world, 10_000)
    assert PlanLedgerEntry.objects.filter(tenant_id=world.tenant.id, data__attempt=2).count() > 300  # retries
    report = backtest.backtest(world.tenant.id, start=start, end=end,
                               candidate=backtest.CandidateSettings.model_validate(CANDIDATE))
    expected = brute_force(world, start, end, CANDIDATE, default_type_budget=10)
    assert report["decisions"] == expected["decisions"] == 10_000
    assert report["before"] == expected["before"]
    assert report["after"] == expected["after"]
    assert report["flips"]["by_change"] == expected["by_change"]
    assert report["flips"]["count"] == sum(expected["by_change"].values()) > 0
    assert len(report["flips"]["first"]) == backtest.MAX_LISTED
    assert report["budget_exhausted"]["count"] == len(expected["exhausted"]) > 0
    listed = {(item["day"], item["budget"], item["action_type"], item["account_id"])
              for item in report["budget_exhausted"]["first"]}
    assert listed <= {(day.isoformat(), budget, action_type, str(account) if account else None)
                      for day, budget, action_type, account in expected["exhausted"]}
    assert sum(report["reasons_after"].values()) == 10_000
    assert report["after"].get("BLOCK", 0) >= expected["after"].get("BLOCK", 0)  # the meeting, DISABLED


def test_budgets_count_from_the_start_of_the_first_day(world):
    seed_decisions(world, 2, plans=1)  # at 00:00 of the first day, and 10 days later
    entries = list(PlanLedgerEntry.objects.filter(tenant_id=world.tenant.id).order_by("occurred_at"))
    # one brief a day may run on its own; both decisions are briefs the candidate would run
    candidate = {"opted_in": True, "action_types": {BRIEF: {"mode": "AUTO_EXECUTE", "max_per_day": 1}}}
    seed_same_day = entries[0].occurred_at + timedelta(hours=12)
    QuerySet(model=PlanLedgerEntry).bulk_create([PlanLedgerEntry(
        tenant_id=world.tenant.id, plan_id=entries[0].plan_id, step_id=uuid.uuid4(), event_type=entry.event_type,
        actor=entry.actor, reason_code=entry.reason_code, explanation=entry.explanation, data={
            "attempt": 1, "autonomy_decision": {"decision": "REQUIRE_APPROVAL", "reason": "TENANT_POLICY",
                                                "facts": StepFacts(action_type=BRIEF, risk_level="LOW",
                                                                   constraints={}, mode="APPROVAL_REQUIRED",
                                                                   opted_in=False).as_dict()}},
        occurred_at=at, chain_seq=5000 + number, prev_hash="0" * 64, entry_hash=uuid.uuid4().hex * 2)
        for number, (entry, at) in enumerate([(entries[0], entries[0].occurred_at + timedelta(hours=1)),
                                              (entries[0], seed_same_day)])])
    window_start = seed_same_day - timedelta(hours=1)
    report = backtest.backtest(world.tenant.id, start=window_start, end=window_start + timedelta(hours=2),
                               candidate=backtest.CandidateSettings.model_validate(candidate))
    # the unit of that day went to the 01:00 decision, before the window: the one in it waits for a person
    assert report["decisions"] == 1
    assert report["reasons_after"] == {"BUDGET_EXHAUSTED": 1}
    assert report["budget_exhausted"]["count"] == 1


def test_unset_settings_replay_the_history_as_it_was(world):
    start, end = seed_decisions(world, 500, plans=10)
    TenantAutonomy.objects.create(tenant=world.tenant, max_per_account_per_day=10**5)
    for action_type in (BRIEF, MEETING, ESCALATE):
        ActionTypeAutonomy.objects.create(tenant=world.tenant, action_type=action_type, max_per_day=10**5)
    report = backtest.backtest(world.tenant.id, start=start, end=end, candidate=backtest.CandidateSettings())
    # budgets without limit, modes and opt-in as recorded: only the recorded exhausted budgets change back
    changes = set(report["flips"]["by_change"])
    assert changes <= {"REQUIRE_APPROVAL -> AUTO_EXECUTE"}
    assert report["flips"]["count"] == sum(1 for entry in PlanLedgerEntry.objects.filter(tenant_id=world.tenant.id)
                                           if entry.reason_code == "BUDGET_EXHAUSTED")


def test_the_command_prints_the_report_and_refuses_bad_settings(world, tmp_path, capsys):
    start, _ = seed_decisions(world, 300, plans=10)
    settings_file = tmp_path / "candidate.json"
    settings_file.write_text(json.dumps(CANDIDATE))
    day = start.date()
    call_command("backtest_policy", "--tenant", world.tenant.slug, "--from", day.isoformat(),
                 "--to", (day + timedelta(days=DAYS)).isoformat(), "--settings-file", str(settings_file),
                 "--no-progress")
    report = json.loads(capsys.readouterr().out)
    assert report["decisions"] == 300
    settings_file.write_text(json.dumps({"action_types": {"SEND_GIFT": {"mode": "AUTO_EXECUTE"}}}))
    with pytest.raises(Exception, match="unknown action types: SEND_GIFT"):
        call_command("backtest_policy", "--tenant", world.tenant.slug, "--from", day.isoformat(),
                     "--to", day.isoformat(), "--settings-file", str(settings_file), "--no-progress")


BACKTEST = "/api/v1/autonomy/backtest/"


def test_the_api_runs_it_for_a_tenant_admin_only_and_refuses_bad_input(world, other_world):
    start, end = seed_decisions(world, 300, plans=10)
    body = {"from": start.isoformat(), "to": end.isoformat(), "settings": CANDIDATE}
    response = client_for(world.admin).post(BACKTEST, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["decisions"] == 300
    assert_error(client_for(world.seller).post(BACKTEST, body, format="json"), 403, "NOT_ALLOWED")
    assert client_for(other_world.admin).post(BACKTEST, body, format="json").json()["decisions"] == 0
    for bad in ({**body, "settings": {"action_types": {BRIEF: {"mode": "SOMETIMES"}}}},
                {**body, "settings": {"max_per_account_per_day": -1}}, {**body, "settings": {"surprise": 1}},
                {**body, "settings": {"policy_version": "auto-approval-v9"}},
                {**body, "to": start.isoformat()}, {**body, "from": False},
                {"from": start.isoformat(), "to": (start + timedelta(days=93)).isoformat(), "settings": {}},
                {**body, "settings": {"opted_in": "yes"}}, {**body, "settings": {"max_per_account_per_day": True}},
                {**body, "start": start.isoformat()}, {**body, "extra": 1}, []):
        assert_error(client_for(world.admin).post(BACKTEST, bad, format="json"), 400, "VALIDATION_ERROR")
    error = client_for(world.admin).post(BACKTEST, {**body, "from": "yesterday"}, format="json").json()
    assert "from" in json.dumps(error)
    assert "start" not in json.dumps(error)
