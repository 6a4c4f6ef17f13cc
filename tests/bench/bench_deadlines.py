"""The deadline job at 100 and 10,000 waiting items (`pytest tests/bench -o python_files='bench_*.py' -s -k
deadlines`): its query count must not depend on the number of items (nothing due, all reminded at once, all
escalated at once), nor on the idle plans around them; its time is reported. The final rule is a move of
each plan through the services, so it is measured per item, on a bounded batch.
"""
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.deadlines.models import DeadlineNotice, DeadlineStage
from orchestrator.deadlines.service import deadlines_run
from plans.models import Account, PlanStatus, PlanStep, RevenuePlan, RiskLevel, StepStatus
from tests.bench.conftest import record, scaled, target
from tests.conftest import build_world

BATCH = 5000
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAR_RENEWAL = date(2026, 9, 1)
RESULTS: dict[int, dict] = {}


def plan_row(world, account, status: str) -> RevenuePlan:
    return RevenuePlan(
        id=uuid.uuid4(), tenant_id=world.tenant.id, account=account, plan_type="RENEWAL_DEFENSE",
        objective="Secure renewal before day -30", plan_status=status,
        constraints={"no_external_contact_without_approval": True}, owner_id=account.owner_id,
        risk_level=RiskLevel.HIGH, expires_at=T0 + timedelta(days=60), created_at=T0 - timedelta(days=1),
        updated_at=T0, created_by="system:bench", activated_at=T0, approved_at=T0)


def fill(world, *, waiting: int, idle: int) -> None:
    """`waiting` ACTIVE plans whose optional step waits for approval since T0, and `idle` finished plans."""
    accounts = Account.objects.bulk_create([
        Account(tenant=world.tenant, name=f"Bench {index}", external_id=f"bench-{index}", owner=world.seller,
                renewal_date=FAR_RENEWAL) for index in range(waiting)], batch_size=BATCH)
    active = [plan_row(world, account, PlanStatus.ACTIVE) for account in accounts]
    finished = [plan_row(world, accounts[index % len(accounts)], PlanStatus.COMPLETED) for index in range(idle)]
    RevenuePlan.objects.bulk_create(active + finished, batch_size=BATCH)
    PlanStep.objects.bulk_create(
        [PlanStep(plan=plan, sequence=0, action_type="ESCALATE_SUPPORT_RISK", required=False,
                  risk_level=RiskLevel.HIGH, status=StepStatus.PENDING_APPROVAL) for plan in active], batch_size=BATCH)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE plans_revenueplan; ANALYZE plans_planstep")


def measured(now) -> tuple[int, float]:
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        deadlines_run(now=now)
    return len(queries), time.perf_counter() - started


@pytest.mark.timeout(900)
@pytest.mark.parametrize("waiting", [100, 10_000], ids=["100", "10000"])
def test_the_deadline_job_costs_the_same_queries_for_100_and_10000_waiting_items(transactional_db, settings,
                                                                                 waiting):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REVPLAN_DEADLINE_FINAL_BATCH = 20
    waiting = scaled(waiting)
    world = build_world()
    for user in world.users.values():
        user.email = f"{user.username}@bench.test"
        user.save(update_fields=["email"])
    fill(world, waiting=waiting, idle=scaled(10_000))
    steps = {}
    steps["nothing_due"] = measured(T0 + timedelta(hours=1))
    steps["remind_all"] = measured(T0 + timedelta(hours=18))
    steps["escalate_all"] = measured(T0 + timedelta(hours=24))
    steps["after_escalation"] = measured(T0 + timedelta(hours=25))  # everything done for now: read and compare
    # The final rule: REVPLAN_DEADLINE_FINAL_BATCH (20) optional steps skipped through the services.
    final_queries, final_seconds = measured(T0 + timedelta(hours=80))
    assert DeadlineNotice.objects.filter(stage=DeadlineStage.REMINDED).count() == waiting
    assert DeadlineNotice.objects.filter(stage=DeadlineStage.ESCALATED).count() == waiting
    assert DeadlineNotice.objects.filter(stage=DeadlineStage.MISSED).count() == 20
    RESULTS[waiting] = {name: queries for name, (queries, _) in steps.items()}
    record("deadlines", **{f"{waiting}_{name}_queries": queries for name, (queries, _) in steps.items()},
           **{f"{waiting}_{name}_seconds": round(seconds, 3) for name, (_, seconds) in steps.items()},
           **{f"{waiting}_final_per_item_queries": final_queries / 20,
              f"{waiting}_final_per_item_seconds": round(final_seconds / 20, 4)})
    print(f"\ndeadlines at {waiting} waiting items (+{scaled(10_000)} idle plans): "
          + ", ".join(f"{name} {queries} queries {seconds:.3f} s" for name, (queries, seconds) in steps.items())
          + f"; final rule {final_queries / 20:.1f} queries {final_seconds / 20 * 1000:.1f} ms per item")
    if len(RESULTS) == 2:
        few, many = (RESULTS[size] for size in sorted(RESULTS))
        for name in few:
            target(f"deadlines_{name}_queries_many_vs_few", many[name] - few[name], 0, op="<=", unit="queries")
            assert many[name] == few[name], (name, few, many)
    target(f"deadlines_remind_{waiting}_seconds", steps["remind_all"][1], 10.0 if waiting > 1000 else 0.5,
           op="<=", unit="s")
