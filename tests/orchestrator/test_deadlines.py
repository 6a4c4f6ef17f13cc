"""Deadlines: with the clock moved (the job's `now`), each wait is reminded when due soon, escalated when
overdue and ended by its plan type's rule at the final deadline — each once, ledgered, mailed — and the job's
query count does not grow with the number of waiting items."""
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orchestrator.deadlines import rules
from orchestrator.deadlines.items import waiting_items
from orchestrator.deadlines.models import DeadlineNotice, DeadlineStage
from orchestrator.deadlines.service import deadlines_run
from plans.due import InboxKind, due_at
from plans.ledger import verify_ledger
from plans.models import EventType, PauseKind, PlanLedgerEntry, PlanStatus, StepStatus
from tests.factories import AccountFactory, make_plan

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAR_RENEWAL = date(2026, 9, 1)  # no renewal cut-off before the SLA


@pytest.fixture
def addresses(world):
    for role, user in world.users.items():
        user.email = f"{role.lower()}@{world.tenant.slug}.test"
        user.save(update_fields=["email"])
    world.account.renewal_date = FAR_RENEWAL
    world.account.save(update_fields=["renewal_date"])
    return {role: user.email for role, user in world.users.items()}


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """One run of the job at `now`, its after-commit mails sent."""
    def run_at(now):
        with django_capture_on_commit_callbacks(execute=True):
            return deadlines_run(now=now)
    return run_at


def waiting_step_plan(world, action_type: str, *, since=T0, account=None):
    return make_plan(account=account or world.account, status=PlanStatus.ACTIVE, action_types=(action_type,),
                     step_status=StepStatus.PENDING_APPROVAL, activated_at=since, updated_at=since,
                     expires_at=since + timedelta(days=60))


def stages(plan) -> list[str]:
    return sorted(DeadlineNotice.objects.filter(plan=plan).values_list("stage", flat=True))


def tenant_entries(world, event_type) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(tenant=world.tenant, plan__isnull=True, event_type=event_type))


def test_an_optional_step_nobody_approves_is_reminded_escalated_then_skipped_each_once(world, addresses, run):
    # given an optional step waiting for approval since T0 (RENEWAL_DEFENSE: due in 24 h, reminded 6 h before,
    # final two days past due)
    plan = waiting_step_plan(world, "ESCALATE_SUPPORT_RISK")
    step = plan.steps.get()

    # then nothing before the reminder time
    assert run(T0 + timedelta(hours=17)).done[DeadlineStage.REMINDED] == 0
    assert mail.outbox == []
    assert stages(plan) == []

    # when it is due soon: the plan owner (the seller) is reminded, once
    assert run(T0 + timedelta(hours=18)).done[DeadlineStage.REMINDED] == 1
    assert run(T0 + timedelta(hours=19)).done == {stage: 0 for stage in DeadlineStage}
    assert [message.to for message in mail.outbox] == [[addresses["SELLER"]]]
    assert "due soon" in mail.outbox[0].subject
    assert "ESCALATE_SUPPORT_RISK" in mail.outbox[0].body
    [reminded] = tenant_entries(world, EventType.DEADLINE_REMINDED)
    assert [item["plan_id"] for item in reminded.data["items"]] == [str(plan.id)]
    assert reminded.data["recipient_ids"] == [world.seller.pk]

    # when it is overdue: the owner and the tenant's admins are told, once
    mail.outbox.clear()
    assert run(T0 + timedelta(hours=24)).done[DeadlineStage.ESCALATED] == 1
    assert run(T0 + timedelta(hours=30)).done[DeadlineStage.ESCALATED] == 0
    assert sorted(message.to[0] for message in mail.outbox) == sorted([addresses["SELLER"],
                                                                        addresses["TENANT_ADMIN"]])
    assert all("overdue" in message.subject for message in mail.outbox)
    assert len(tenant_entries(world, EventType.DEADLINE_ESCALATED)) == 1

    # when the final deadline passes: the rule skips the optional step, once, through the services
    mail.outbox.clear()
    assert run(T0 + timedelta(hours=71)).done[DeadlineStage.MISSED] == 0
    assert run(T0 + timedelta(hours=72)).done[DeadlineStage.MISSED] == 1
    assert run(T0 + timedelta(hours=80)).done == {stage: 0 for stage in DeadlineStage}
    step.refresh_from_db()
    assert step.status == StepStatus.SKIPPED
    assert "final deadline" in step.skip_reason
    [missed] = PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.DEADLINE_MISSED)
    assert missed.data["rule"] == "SKIP_OR_PAUSE"
    assert "skipped" in missed.data["outcome"]
    assert PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.STEP_SKIPPED).actor == "system:deadlines"
    assert stages(plan) == ["ESCALATED", "MISSED", "REMINDED"]
    assert len(mail.outbox) == 2
    assert all("missed" in message.subject for message in mail.outbox)
    # every entry sits in an intact chain (the tenant's for the notices, the plan's for the rule)
    report = verify_ledger(tenant_id=world.tenant.id)
    assert report.ok, report.broken


def test_a_required_step_pauses_the_plan_whose_pause_is_then_a_wait_of_its_own(world, addresses, run):
    plan = waiting_step_plan(world, "REQUEST_RENEWAL_MEETING")
    for hours in (18, 24, 72):
        run(T0 + timedelta(hours=hours))
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.PAUSED
    layer = plan.pause_layers.get(lifted_at__isnull=True)
    assert (layer.kind, layer.reason_code, layer.set_by) == (PauseKind.POLICY, "DEADLINE_MISSED", "system:deadlines")
    assert plan.steps.get().status == StepStatus.PENDING_APPROVAL  # a person still decides about it
    # The pause waits for a person now: a PAUSED item since the layer was set, with stages of its own.
    [item] = waiting_items(now=layer.set_at + timedelta(days=3), due_soon_only=False)
    assert (item.kind, item.waiting_since) == (InboxKind.PAUSED, layer.set_at)


def test_a_draft_nobody_approves_is_aborted_and_its_approvers_not_its_creator_are_mailed(world, addresses, run):
    draft = make_plan(account=world.account, created_by=f"user:{world.approver.pk}", updated_at=T0,
                      expires_at=T0 + timedelta(days=60))
    # DRAFT: due in 48 h, reminded 12 h before, aborted five days past due
    run(T0 + timedelta(hours=36))
    [reminder] = mail.outbox
    assert reminder.to == [addresses["TENANT_ADMIN"]]  # the approver who created it may not approve it
    run(T0 + timedelta(hours=48))
    run(T0 + timedelta(days=7))
    draft.refresh_from_db()
    assert (draft.plan_status, draft.stop_reason_code) == (PlanStatus.ABORTED, "DEADLINE_MISSED")
    assert PlanLedgerEntry.objects.filter(plan=draft, event_type=EventType.DEADLINE_MISSED).count() == 1


def test_the_final_rule_waits_for_the_escalation_to_be_old_enough(world, addresses, run, settings):
    """A job that was down finds an item long past its final deadline: reminded, escalated, and only
    REVPLAN_DEADLINE_FINAL_NOTICE_SECONDS later is the rule applied (nobody loses a plan unwarned)."""
    plan = waiting_step_plan(world, "ESCALATE_SUPPORT_RISK")
    late = T0 + timedelta(days=10)
    assert run(late).done[DeadlineStage.REMINDED] == 1
    assert run(late + timedelta(minutes=5)).done[DeadlineStage.ESCALATED] == 1
    assert run(late + timedelta(hours=1)).done[DeadlineStage.MISSED] == 0
    notice = timedelta(seconds=settings.REVPLAN_DEADLINE_FINAL_NOTICE_SECONDS)
    assert run(late + timedelta(minutes=5) + notice).done[DeadlineStage.MISSED] == 1
    assert plan.steps.get().status == StepStatus.SKIPPED


def test_a_wait_that_ended_is_left_alone(world, addresses, run):
    from plans import services

    plan = waiting_step_plan(world, "ESCALATE_SUPPORT_RISK")
    run(T0 + timedelta(hours=18))
    services.step_approve(plan_id=plan.id, step_id=plan.steps.get().step_id, user=world.seller)
    assert run(T0 + timedelta(days=5)).done == {stage: 0 for stage in DeadlineStage}
    assert plan.steps.get().status != StepStatus.SKIPPED


def test_a_renewal_close_by_brings_the_due_time_forward():
    waiting_since = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    # Renewal on June 10: a step approval is due by midnight of May 6 (35 days before), not May 2 (the SLA) ...
    far = rules.deadlines_of(InboxKind.STEP_APPROVAL, "RENEWAL_DEFENSE", waiting_since, date(2026, 6, 10))
    assert far.due_at == waiting_since + timedelta(hours=24)
    # ... but with the renewal on June 5 it is due at midnight of May 1: already overdue.
    near = rules.deadlines_of(InboxKind.STEP_APPROVAL, "RENEWAL_DEFENSE", waiting_since, date(2026, 6, 5))
    assert near.due_at == datetime(2026, 5, 1, tzinfo=UTC)
    assert near.final_at == near.due_at + timedelta(days=2)
    # A paused plan has no cut-off: the SLA (72 h) alone.
    paused = rules.deadlines_of(InboxKind.PAUSED, "RENEWAL_DEFENSE", waiting_since, date(2026, 6, 5))
    assert paused.due_at == waiting_since + timedelta(hours=72)
    # The inbox shows the same due time for each (one rule: plans.inbox.due_at).
    for kind, renewal, deadlines in ((InboxKind.STEP_APPROVAL, date(2026, 6, 10), far),
                                     (InboxKind.STEP_APPROVAL, date(2026, 6, 5), near),
                                     (InboxKind.PAUSED, date(2026, 6, 5), paused)):
        assert deadlines.due_at == due_at(kind, "RENEWAL_DEFENSE", waiting_since, renewal)


def test_a_due_soon_renewal_brings_a_fresh_wait_into_the_job(world, addresses, run):
    world.account.renewal_date = (T0 + timedelta(days=36)).date()
    world.account.save(update_fields=["renewal_date"])
    waiting_step_plan(world, "ESCALATE_SUPPORT_RISK", since=T0)
    # Waiting one hour only, but due at midnight 35 days before the renewal (tomorrow): reminded at 18:00.
    assert run(T0 + timedelta(hours=1)).done[DeadlineStage.REMINDED] == 0
    assert run(datetime(2026, 3, 2, 18, 0, tzinfo=UTC)).done[DeadlineStage.REMINDED] == 1


def _waiting_steps(world, count: int) -> None:
    for _ in range(count):
        account = AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=FAR_RENEWAL)
        waiting_step_plan(world, "ESCALATE_SUPPORT_RISK", account=account)
    for _ in range(count):
        make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), updated_at=T0,
                  expires_at=T0 + timedelta(days=60))


def _queries(run, now) -> int:
    with CaptureQueriesContext(connection) as queries:
        run(now)
    return len(queries)


@pytest.mark.parametrize("hours", [1, 18, 30], ids=["nothing-due", "all-reminded", "all-escalated"])
def test_the_job_runs_in_the_same_number_of_queries_for_few_and_many_waiting_items(world, addresses, run, hours):
    _waiting_steps(world, 3)
    if hours == 30:
        run(T0 + timedelta(hours=18))  # reminded first: escalation is the next stage
    few = _queries(run, T0 + timedelta(hours=hours))
    _waiting_steps(world, 30)
    if hours == 30:
        run(T0 + timedelta(hours=18, minutes=2))
    many = _queries(run, T0 + timedelta(hours=hours, minutes=10))
    assert many == few
    if hours == 18:
        assert DeadlineNotice.objects.filter(stage=DeadlineStage.REMINDED).count() == 33


def test_the_digest_and_the_inbox_show_overdue_items_first(world, addresses):
    from orchestrator.autonomy.digest import build_summary, render_text
    from plans.inbox import inbox_entries

    day = date(2026, 3, 1)
    end = datetime(2026, 3, 2, tzinfo=UTC)
    fresh = waiting_step_plan(world, "ESCALATE_SUPPORT_RISK", since=end - timedelta(hours=1))
    late = waiting_step_plan(world, "ESCALATE_SUPPORT_RISK", since=end - timedelta(days=3),
                             account=AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=FAR_RENEWAL))
    later = waiting_step_plan(world, "ESCALATE_SUPPORT_RISK", since=end - timedelta(days=4),
                              account=AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=FAR_RENEWAL))
    summary = build_summary(world.tenant.id, day=day)
    assert [item["plan_id"] for item in summary["overdue"]["items"]] == [str(later.id), str(late.id)]
    assert [(item["plan_id"], item["overdue"]) for item in summary["waiting_for_people"]["items"]] == [
        (str(later.id), True), (str(late.id), True), (str(fresh.id), False)]
    text = render_text(summary)
    assert "Overdue for a person: 2" in text
    assert text.index(str(later.id)) < text.index(str(late.id))
    assert [entry.plan_id for entry in inbox_entries(world.seller)] == [later.id, late.id, fresh.id]


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_remind_once(world, addresses):
    import threading

    from django.db import connections

    plan = waiting_step_plan(world, "ESCALATE_SUPPORT_RISK")
    barrier = threading.Barrier(2)
    results = []

    def beat():
        try:
            barrier.wait(timeout=10)
            results.append(deadlines_run(now=T0 + timedelta(hours=18)).done[DeadlineStage.REMINDED])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [0, 1]
    assert stages(plan) == ["REMINDED"]
    assert len(tenant_entries(world, EventType.DEADLINE_REMINDED)) == 1
    assert [message.to for message in mail.outbox] == [[addresses["SELLER"]]]


def test_the_worker_registers_the_tasks_and_beat_runs_them():
    from django.conf import settings

    from revplan.celery import app

    app.loader.import_default_modules()
    assert {"orchestrator.deadlines", "orchestrator.stuck_plans"} <= set(app.tasks)
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"orchestrator.deadlines", "orchestrator.stuck_plans"} <= scheduled


def test_the_task_runs_the_job(world, addresses):
    from orchestrator.deadlines.tasks import deadlines

    waiting_step_plan(world, "ESCALATE_SUPPORT_RISK", since=timezone.now() - timedelta(days=1, hours=1))
    assert deadlines.run() == {"waiting": 1, "overdue": 1, "REMINDED": 1, "ESCALATED": 0, "MISSED": 0}


def test_one_tenants_failure_does_not_cost_the_others_their_reminders(world, other_world, addresses, run,
                                                                      monkeypatch):
    from orchestrator.deadlines import service

    other_world.account.renewal_date = FAR_RENEWAL
    other_world.account.save(update_fields=["renewal_date"])
    ours, theirs = waiting_step_plan(world, "ESCALATE_SUPPORT_RISK"), waiting_step_plan(other_world,
                                                                                       "ESCALATE_SUPPORT_RISK")
    notify = service._notify

    def failing_for_ours(tenant_id, *args, **kwargs):
        if tenant_id == world.tenant.id:
            raise RuntimeError("mail server said no")
        return notify(tenant_id, *args, **kwargs)

    monkeypatch.setattr(service, "_notify", failing_for_ours)
    assert run(T0 + timedelta(hours=18)).done[DeadlineStage.REMINDED] == 1
    assert (stages(ours), stages(theirs)) == ([], ["REMINDED"])
    monkeypatch.setattr(service, "_notify", notify)
    assert run(T0 + timedelta(hours=19)).done[DeadlineStage.REMINDED] == 1  # its turn came next run
    assert stages(ours) == ["REMINDED"]
