"""The admin's "Needs your input" (plans.admin_inbox): the inbox as a page with its buttons going through the
confirmation pages, ages in words, the bulk approval of waiting steps (each on its own), the index as the
approvers' landing page, in constant queries."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from plans import services
from plans.admin_inbox import age_words, duration_words
from plans.inbox import inbox_items
from plans.models import EventType, PlanLedgerEntry, PlanStatus, RevenuePlan, StepStatus
from tests.factories import AccountFactory, make_plan
from tests.plans.test_admin import action_url, console, messages_of, step_url

pytestmark = pytest.mark.django_db

INBOX = reverse("admin:plans_revenueplan_inbox")


def waiting_step_plan(world, *, activated_hours_ago: float = 0):
    return make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE,
                     action_types=("REQUEST_RENEWAL_MEETING",), step_status=StepStatus.PENDING_APPROVAL,
                     activated_at=timezone.now() - timedelta(hours=activated_hours_ago))


def test_ages_and_due_times_in_words(world):
    now = timezone.now()
    on_time = waiting_step_plan(world, activated_hours_ago=3)
    late = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller),
                     updated_at=now - timedelta(hours=50))
    items = {item.plan.id: item for item in inbox_items(world.approver, now=now)}

    assert age_words(items[on_time.id]) == "waiting 3 h, due in 21 h"
    assert age_words(items[late.id]) == "waiting 2 d, overdue by 2 h"
    assert [duration_words(seconds) for seconds in (20, 25 * 60, 5 * 3600, 4 * 86400)] == [
        "less than a minute", "25 min", "5 h", "4 d"]


def test_the_page_lists_each_wait_with_its_confirmation_buttons(world):
    draft = make_plan(account=world.account)
    step_plan = waiting_step_plan(world)
    step = step_plan.steps.get()

    page = console(world.approver).get(INBOX)

    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="inbox-item') == 2
    assert action_url(draft, "approve") in html
    assert action_url(draft, "abort") in html
    assert step_url(step_plan, step, "approve") in html
    assert f'value="{step_plan.pk}:{step.step_id}:{step_plan.version}"' in html  # the step can be approved in bulk
    assert "waiting 5 min, due in 48 h" in html  # the factory's DRAFT was proposed 5 min ago
    assert "waiting less than a minute, due in 24 h" in html


def test_a_viewer_has_nothing_and_no_box_on_the_index(world):
    make_plan(account=world.account)
    client = console(world.viewer)

    page = client.get(INBOX)
    index = client.get(reverse("admin:index"))

    assert "Nothing needs your input." in page.content.decode()
    assert 'class="inbox-item' not in page.content.decode()
    assert b'id="needs-your-input"' not in index.content


def test_the_index_is_the_approvers_landing_page(world):
    make_plan(account=world.account)
    make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller),
              updated_at=timezone.now() - timedelta(days=3))

    index = console(world.approver).get(reverse("admin:index")).content.decode()
    seller_index = console(world.seller).get(reverse("admin:index")).content.decode()

    assert 'id="needs-your-input"' in index
    assert "Needs your input: 2 waiting, 1 overdue" in index
    assert INBOX in index
    assert 'id="needs-your-input"' not in seller_index  # nothing waits for the seller, who approves no plans


def test_the_plan_list_and_the_active_plans_page_link_to_it(world):
    client = console(world.approver)

    assert INBOX in client.get(reverse("admin:plans_revenueplan_changelist")).content.decode()
    assert INBOX in client.get(reverse("admin:plans_revenueplan_open")).content.decode()


def test_bulk_approval_approves_each_step_on_its_own_and_reports_the_refusal(world, other_world):
    first, second, paused = (waiting_step_plan(world) for _ in range(3))
    theirs = make_plan(account=other_world.account, status=PlanStatus.ACTIVE,
                       action_types=("REQUEST_RENEWAL_MEETING",), step_status=StepStatus.PENDING_APPROVAL)
    client = console(world.approver)
    client.get(INBOX)
    # paused after the page was shown: its step can no longer be approved
    services.plan_pause(plan_id=paused.id, user=world.admin, reason="customer asked for a break")
    paused.refresh_from_db()
    picked = [f"{plan.pk}:{plan.steps.get().step_id}:{RevenuePlan.objects.get(pk=plan.pk).version}"
              for plan in (first, paused, second, theirs)]

    response = client.post(INBOX, {"step": picked}, follow=True)

    said = messages_of(response)
    assert said[0] == f"{first.account.name}: step 1 (REQUEST_RENEWAL_MEETING): approved."
    assert said[1].startswith(f"{paused.account.name}: step 1 (REQUEST_RENEWAL_MEETING): not approved — "
                              "INVALID_TRANSITION")
    assert said[2] == f"{second.account.name}: step 1 (REQUEST_RENEWAL_MEETING): approved."
    assert said[3].endswith("not approved — it does not exist.")
    assert other_world.account.name not in said[3]
    for plan in (first, second):
        step = plan.steps.get()
        assert (step.status, step.approved_by) == (StepStatus.PENDING, world.approver)
        assert PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STEP_APPROVED).count() == 1
    assert paused.steps.get().status == StepStatus.PENDING_APPROVAL
    assert theirs.steps.get().status == StepStatus.PENDING_APPROVAL
    version = paused.version
    paused.refresh_from_db()
    assert paused.version == version  # the refusal changed nothing
    assert not PlanLedgerEntry.objects.filter(plan__in=[paused, theirs], event_type=EventType.STEP_APPROVED).exists()
    assert [row["item"].plan.id for row in response.context["rows"]] == [paused.id]  # what still waits


def test_a_viewers_bulk_approval_is_refused_and_changes_nothing(world):
    plan = waiting_step_plan(world)

    response = console(world.viewer).post(INBOX, {"step": [f"{plan.pk}:{plan.steps.get().step_id}:{plan.version}"]},
                                          follow=True)

    assert "NOT_ALLOWED" in messages_of(response)[0]
    assert plan.steps.get().status == StepStatus.PENDING_APPROVAL


def test_the_page_takes_the_same_number_of_queries_for_1_and_20_items_of_each_kind(world):
    client = console(world.admin)
    counts = []
    for added in (1, 19):
        for _ in range(added):
            make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller))
            waiting_step_plan(world)
        with CaptureQueriesContext(connection) as queries:
            page = client.get(INBOX)
        assert page.status_code == 200
        counts.append((page.content.decode().count('class="inbox-item'), len(queries)))

    assert [rows for rows, _ in counts] == [2, 40]
    assert counts[0][1] == counts[1][1], counts


def test_bulk_approval_refuses_a_plan_that_changed_since_the_page_was_shown(world):
    plan = waiting_step_plan(world)
    client = console(world.approver)
    [shown] = [row["bulk_value"] for row in client.get(INBOX).context["rows"] if row["bulk_value"]]
    # changed meanwhile: paused and resumed by someone else (the step still waits)
    services.plan_pause(plan_id=plan.id, user=world.admin, reason="checking with the customer")
    services.plan_resume(plan_id=plan.id, user=world.admin)
    assert plan.steps.get().status == StepStatus.PENDING_APPROVAL

    response = client.post(INBOX, {"step": [shown]}, follow=True)

    assert "VERSION_CONFLICT" in messages_of(response)[0]
    assert plan.steps.get().status == StepStatus.PENDING_APPROVAL
    assert not PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.STEP_APPROVED).exists()
