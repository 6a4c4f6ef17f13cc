"""Stuck plans: an ACTIVE plan with a runnable step and nothing due (its next_run_at lost) is flagged, ledgered
and re-driven once per episode; a plan waiting on a person or a clock, or one that moved lately, is not."""
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from orchestrator import claims, engine
from orchestrator.deadlines.models import StuckEpisode
from orchestrator.deadlines.stuck import stuck_plans_detect
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan, StepStatus
from tests.factories import AccountFactory, make_plan

pytestmark = pytest.mark.django_db


def active_plan(world, *, quiet_for=timedelta(hours=2), account=None, **fields):
    since = timezone.now() - quiet_for
    return make_plan(account=account or world.account, status=PlanStatus.ACTIVE, action_types=("PREP_RENEWAL_BRIEF",),
                     activated_at=since, updated_at=since, next_run_at=None, **fields)


def stuck_entries(plan) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STUCK_DETECTED))


def detected_total() -> float:
    return REGISTRY.get_sample_value("revplan_stuck_plans_detected_total") or 0.0


def test_a_plan_whose_next_run_at_was_lost_is_flagged_and_re_driven_once(world):
    # given an ACTIVE plan with a runnable step that no tick looks at (next_run_at lost) for two hours
    plan = active_plan(world)
    now = timezone.now()
    assert plan.id not in claims.due_plan_ids(now=now)
    before = detected_total()

    # when the detector runs (twice: a second beat, or the next one)
    assert stuck_plans_detect(now=now) == [plan.id]
    assert stuck_plans_detect(now=now + timedelta(minutes=5)) == []

    # then one episode, one STUCK_DETECTED entry with what was last seen, one re-drive
    [entry] = stuck_entries(plan)
    seen = entry.data["last_seen"]
    assert seen["next_run_at"] is None
    assert [(step["action_type"], step["status"]) for step in seen["steps"]] == [("PREP_RENEWAL_BRIEF", "PENDING")]
    assert seen["blocked_by"] == []  # it waits on nobody and no clock
    [episode] = StuckEpisode.objects.filter(plan=plan)
    assert episode.redriven_at == now
    assert episode.resolved_at is None
    assert detected_total() == before + 1
    plan.refresh_from_db()
    assert plan.next_run_at == now

    # and the tick takes it from there: it claims the plan, whose advance starts the step
    assert plan.id in claims.due_plan_ids(now=now + timedelta(seconds=1))
    engine.advance_plan(plan.id)
    # (the autonomy default, APPROVAL_REQUIRED: it now waits for a person, which is progress)
    assert plan.steps.get().status == StepStatus.PENDING_APPROVAL
    assert PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STEP_AWAITING_APPROVAL).exists()
    # it moved: the episode is over, nothing is flagged again
    assert stuck_plans_detect(now=timezone.now() + timedelta(minutes=1)) == []
    episode.refresh_from_db()
    assert episode.resolved_at is not None
    assert len(stuck_entries(plan)) == 1


def test_a_re_drive_that_did_not_move_the_plan_is_not_repeated(world):
    plan = active_plan(world)
    now = timezone.now()
    stuck_plans_detect(now=now)
    # nothing advanced it (no tick ran): still the same episode an hour later, flagged, not re-driven again
    assert stuck_plans_detect(now=now + timedelta(hours=1)) == []
    assert len(stuck_entries(plan)) == 1
    assert StuckEpisode.objects.get(plan=plan).resolved_at is None


def test_plans_waiting_on_a_person_or_a_clock_or_lately_moved_are_not_stuck(world):
    waits_for_person = active_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller),
                                   step_status=StepStatus.PENDING_APPROVAL)
    waits_for_clock = active_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller))
    waits_for_clock.steps.update(attempts=1, next_attempt_at=timezone.now() + timedelta(hours=1))
    moved_lately = active_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller),
                               quiet_for=timedelta(minutes=5))
    paused = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.PAUSED,
                       updated_at=timezone.now() - timedelta(days=1))
    assert stuck_plans_detect(now=timezone.now()) == []
    assert not StuckEpisode.objects.filter(plan__in=[waits_for_person, waits_for_clock, moved_lately, paused]).exists()


def test_the_quiet_time_is_a_setting(world, settings):
    plan = active_plan(world, quiet_for=timedelta(minutes=20))
    assert stuck_plans_detect(now=timezone.now()) == []  # 30 minutes by default
    settings.REVPLAN_STUCK_AFTER_SECONDS = 600
    assert stuck_plans_detect(now=timezone.now()) == [plan.id]


def test_plans_flagged_before_do_not_hide_a_plan_stuck_since(world, settings):
    # A batch of two: two old plans the re-drive did not move stay stuck, flagged once; a newer stuck plan
    # must still be found (they no longer fill every batch), and their episodes stay open.
    settings.REVPLAN_STUCK_BATCH = 2
    old = [active_plan(world, quiet_for=timedelta(hours=5), account=AccountFactory(tenant=world.tenant,
                                                                                   owner=world.seller))
           for _ in range(2)]
    now = timezone.now()
    assert sorted(stuck_plans_detect(now=now), key=str) == sorted((plan.id for plan in old), key=str)
    RevenuePlan.objects.filter(pk__in=[plan.id for plan in old]).update(next_run_at=None)  # nothing moved
    new = active_plan(world, quiet_for=timedelta(hours=2), account=AccountFactory(tenant=world.tenant,
                                                                                  owner=world.seller))

    later = stuck_plans_detect(now=now + timedelta(minutes=5))
    again = stuck_plans_detect(now=now + timedelta(minutes=10))

    assert later == [new.id]
    assert again == []
    assert StuckEpisode.objects.filter(resolved_at__isnull=True).count() == 3
    assert [len(stuck_entries(plan)) for plan in [*old, new]] == [1, 1, 1]


def test_the_admin_lists_stuck_plans_open_ones_first(world, other_world):
    from django.contrib.auth.models import Permission
    from django.test import Client
    from django.urls import reverse

    plan = active_plan(world)
    stuck_plans_detect(now=timezone.now() - timedelta(minutes=10))
    moved = active_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller))
    stuck_plans_detect(now=timezone.now())  # flagged after `plan`
    moved.steps.update(status=StepStatus.PENDING_APPROVAL)  # it now waits for a person: the episode is over
    theirs = active_plan(other_world)
    stuck_plans_detect(now=timezone.now() + timedelta(minutes=1))
    assert StuckEpisode.objects.filter(plan=theirs).exists()
    assert StuckEpisode.objects.get(plan=moved).resolved_at is not None

    world.admin.is_staff = True
    world.admin.save()
    world.admin.user_permissions.add(Permission.objects.get(codename="view_stuckepisode"))
    client = Client()
    client.force_login(world.admin)
    response = client.get(reverse("admin:orchestrator_stuckepisode_changelist"))
    assert response.status_code == 200
    # open episodes first, however old; another tenant's not at all
    assert [row.plan_id for row in response.context["cl"].result_list] == [plan.id, moved.id]
    still = client.get(reverse("admin:orchestrator_stuckepisode_changelist") + "?open=yes")
    assert [row.plan_id for row in still.context["cl"].result_list] == [plan.id]


def test_the_detector_reads_many_quiet_plans_in_the_same_number_of_queries(world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def quiet_plans_waiting_for_a_clock(count):
        for _ in range(count):
            plan = active_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller))
            plan.steps.update(attempts=1, next_attempt_at=timezone.now() + timedelta(hours=1))

    quiet_plans_waiting_for_a_clock(2)
    with CaptureQueriesContext(connection) as few:
        assert stuck_plans_detect(now=timezone.now()) == []
    quiet_plans_waiting_for_a_clock(10)
    with CaptureQueriesContext(connection) as many:
        assert stuck_plans_detect(now=timezone.now()) == []
    assert len(many) == len(few)
