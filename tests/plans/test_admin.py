"""The approvers' admin console: plan and step actions go through the services with the same rules."""
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from plans import services
from plans.models import EventType, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.proposals import renewal_defense_draft
from tests.factories import make_plan

pytestmark = pytest.mark.django_db


def console(user) -> Client:
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="plans", codename__startswith="view_"))
    client = Client()
    client.force_login(user)
    return client


def draft(world, *, by=None):
    return services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=renewal_defense_draft(signal_types=set()), actor=by or world.seller)


def change_url(plan):
    return reverse("admin:plans_revenueplan_change", args=[plan.pk])


def action_url(plan, action):
    return reverse("admin:plans_revenueplan_action", args=[plan.pk, action])


def step_url(plan, step, action):
    return reverse("admin:plans_revenueplan_step_action", args=[plan.pk, step.step_id, action])


def ledger_of(plan):
    return list(PlanLedgerEntry.objects.filter(plan_id=plan.id).order_by("chain_seq")
                .values_list("event_type", "actor", "reason_code"))


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_approver_sees_the_approve_button_and_approving_ledgers_it(world):
    plan = draft(world)
    client = console(world.approver)

    page = client.get(change_url(plan))
    confirm = client.get(action_url(plan, "approve"))
    response = client.post(action_url(plan, "approve"), {"version": plan.version}, follow=True)

    assert page.status_code == 200
    assert action_url(plan, "approve") in page.content.decode()
    assert "it waits for a plan approver" in page.content.decode()
    assert confirm.status_code == 200
    assert b'id="confirm-action"' in confirm.content
    assert messages_of(response) == ["Approve: done."]
    plan.refresh_from_db()
    assert (plan.plan_status, plan.approved_by) == (PlanStatus.APPROVED, world.approver)
    assert ledger_of(plan)[-1] == (EventType.PLAN_APPROVED, f"user:{world.approver.pk}", "APPROVED")
    assert b'data-event="PLAN_APPROVED"' in client.get(change_url(plan)).content


def test_seller_sees_no_approve_button_and_a_forged_post_changes_nothing(world):
    plan = draft(world, by=world.approver)
    client = console(world.seller)
    before = ledger_of(plan)

    page = client.get(change_url(plan))
    changelist = client.get(reverse("admin:plans_revenueplan_changelist"))
    response = client.post(action_url(plan, "approve"), {"version": plan.version}, follow=True)

    assert page.status_code == 200
    assert action_url(plan, "approve") not in page.content.decode()
    assert changelist.status_code == 200
    assert b"approve_selected" not in changelist.content
    assert messages_of(response)[0].startswith("NOT_ALLOWED:")
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.DRAFT
    assert ledger_of(plan) == before


def test_another_tenants_plan_is_404_on_every_console_page(world, other_world):
    plan = draft(other_world)
    step = plan.steps.first()
    client = console(world.admin)

    hidden = client.get(change_url(plan))
    assert hidden.status_code == 302  # Django admin's "does not exist" redirect, no page
    assert hidden.url == reverse("admin:index")
    assert client.post(action_url(plan, "abort"), {"version": plan.version, "reason": "x"}).status_code == 404
    assert client.post(step_url(plan, step, "skip"), {"version": plan.version, "reason": "x"}).status_code == 404
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.DRAFT


def test_abort_needs_a_reason_and_an_unknown_action_is_404(world):
    plan = draft(world)
    client = console(world.admin)

    empty = client.post(action_url(plan, "abort"), {"version": plan.version, "reason": "  "})
    unknown = client.post(action_url(plan, "explode"), {"version": plan.version})
    aborted = client.post(action_url(plan, "abort"), {"version": plan.version, "reason": "Customer churned"},
                          follow=True)

    assert empty.status_code == 200
    assert empty.context["form"].errors == {"reason": ["This field is required."]}
    assert unknown.status_code == 404
    assert messages_of(aborted) == ["Abort: done."]
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ABORTED
    assert ledger_of(plan)[-1] == (EventType.PLAN_ABORTED, f"user:{world.admin.pk}", "ABORTED_BY_USER")


def test_a_stale_page_is_refused_with_a_version_conflict(world):
    plan = draft(world)
    client = console(world.approver)
    stale_version = plan.version
    services.plan_edit(plan_id=plan.id, user=world.seller, draft=renewal_defense_draft(signal_types={"SUPPORT_RISK"}))
    before = ledger_of(plan)

    response = client.post(action_url(plan, "approve"), {"version": stale_version}, follow=True)

    assert messages_of(response)[0].startswith("VERSION_CONFLICT:")
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.DRAFT
    assert ledger_of(plan) == before


def test_bulk_approve_checks_each_plan_on_its_own(world, other_world):
    from tests.factories import AccountFactory

    mine = draft(world)
    second_account = AccountFactory(tenant=world.tenant, owner=world.seller)
    own = services.plan_propose(account_id=second_account.id, plan_type="RENEWAL_DEFENSE",
                                draft=renewal_defense_draft(signal_types=set()), actor=world.approver)
    client = console(world.approver)

    response = client.post(reverse("admin:plans_revenueplan_changelist"),
                           {"action": "approve_selected", "_selected_action": [mine.pk, own.pk]}, follow=True)

    texts = sorted(messages_of(response))
    assert texts[0] == f"{world.account.name}: approved."
    assert texts[1].startswith(f"{second_account.name}: not approved — CREATOR_CANNOT_APPROVE")
    statuses = dict(RevenuePlan.objects.filter(pk__in=[mine.pk, own.pk]).values_list("pk", "plan_status"))
    assert statuses == {mine.pk: PlanStatus.APPROVED, own.pk: PlanStatus.DRAFT}


def test_step_approve_and_skip_from_the_plan_page(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE,
                     action_types=["REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"])
    meeting, brief, escalate = plan.steps.order_by("sequence")
    PlanStep.objects.filter(pk=meeting.pk).update(status=StepStatus.PENDING_APPROVAL)
    client = console(world.seller)  # the plan's owner may approve and skip its steps

    page = client.get(change_url(plan)).content.decode()
    approved = client.post(step_url(plan, meeting, "approve"), {"version": plan.version}, follow=True)
    plan.refresh_from_db()
    empty_reason = client.post(step_url(plan, escalate, "skip"), {"version": plan.version, "reason": ""})
    required = client.post(step_url(plan, brief, "skip"), {"version": plan.version, "reason": "x"}, follow=True)
    plan.refresh_from_db()
    skipped = client.post(step_url(plan, escalate, "skip"), {"version": plan.version, "reason": "Support is on it"},
                          follow=True)

    assert step_url(plan, meeting, "approve") in page
    assert step_url(plan, escalate, "skip") in page
    assert step_url(plan, brief, "skip") not in page  # required steps offer no skip
    assert "Step 1 (REQUEST_RENEWAL_MEETING) waits for a person&#x27;s approval" in page
    assert messages_of(approved) == ["Approve step: done."]
    assert empty_reason.status_code == 200
    assert "reason" in empty_reason.context["form"].errors
    assert messages_of(required)[0].startswith("REQUIRED_STEP:")
    assert messages_of(skipped) == ["Skip step: done."]
    meeting.refresh_from_db()
    brief.refresh_from_db()
    escalate.refresh_from_db()
    assert (meeting.status, meeting.approved_by) == (StepStatus.PENDING, world.seller)
    assert brief.status == StepStatus.PENDING
    assert (escalate.status, escalate.skip_reason) == (StepStatus.SKIPPED, "Support is on it")
    events = [event for event, _, _ in ledger_of(plan)]
    assert events[-2:] == [EventType.STEP_APPROVED, EventType.STEP_SKIPPED]


def test_viewer_gets_no_buttons_and_cannot_act(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    client = console(world.viewer)

    page = client.get(change_url(plan)).content.decode()
    response = client.post(action_url(plan, "pause"), {"version": plan.version, "reason": ""}, follow=True)

    assert "plan-action" not in page
    assert "step-action" not in page
    assert messages_of(response)[0].startswith("NOT_ALLOWED:")
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ACTIVE


def test_open_plans_page_shows_what_each_plan_waits_for_in_constant_queries(world, django_assert_max_num_queries):
    from tests.factories import AccountFactory

    client = console(world.approver)
    waiting = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    PlanStep.objects.filter(plan=waiting, sequence=0).update(status=StepStatus.PENDING_APPROVAL)
    paused_account = AccountFactory(tenant=world.tenant, owner=world.seller)
    paused = make_plan(account=paused_account, status=PlanStatus.ACTIVE)
    services.plan_pause(plan_id=paused.id, user=world.approver, reason="Waiting on legal")
    make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.DRAFT)

    url = reverse("admin:plans_revenueplan_open")
    with django_assert_max_num_queries(12) as few:
        first = client.get(url)
    for _ in range(10):
        make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.PAUSED)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(url)

    rows = {row.plan.pk: row for row in first.context["rows"]}
    assert set(rows) == {waiting.pk, paused.pk}
    assert rows[waiting.pk].waiting.startswith("Step 1 (REQUEST_RENEWAL_MEETING) waits for a person's approval")
    assert "because Waiting on legal." in rows[paused.pk].waiting
    assert [entry.event_type for entry in rows[paused.pk].why.stopped.entries] == [EventType.PLAN_PAUSED]


def test_approving_through_the_api_and_the_admin_gives_identical_rows_and_ledger_entries(world):
    from tests.api.helpers import client_for
    from tests.factories import AccountFactory

    by_api = draft(world)
    by_admin = services.plan_propose(account_id=AccountFactory(tenant=world.tenant, owner=world.seller).id,
                                     plan_type="RENEWAL_DEFENSE", draft=renewal_defense_draft(signal_types=set()),
                                     actor=world.seller)

    api_response = client_for(world.approver).post(f"/api/v1/plans/{by_api.pk}/approve/", {}, format="json")
    console(world.approver).post(action_url(by_admin, "approve"), {"version": by_admin.version})

    assert api_response.status_code == 200
    fields = ["plan_status", "approved_by_id", "version", "risk_level", "stop_reason_code", "completion_reason"]
    rows = [RevenuePlan.objects.filter(pk=plan.pk).values(*fields).get() for plan in (by_api, by_admin)]
    assert rows[0] == rows[1]
    assert rows[0]["plan_status"] == PlanStatus.APPROVED

    def last_entry(plan):
        entry = PlanLedgerEntry.objects.filter(plan_id=plan.id).order_by("-chain_seq").first()
        data = {key: value for key, value in entry.data.items() if key != "plan"}
        return entry.event_type, entry.actor, entry.reason_code, entry.explanation, entry.chain_seq, data

    assert last_entry(by_api) == last_entry(by_admin)
    assert last_entry(by_api)[0] == EventType.PLAN_APPROVED
