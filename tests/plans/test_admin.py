"""The approvers' admin console: plan and step actions, memberships and account owners go through the services
with the same rules; every page offers only the user's tenants."""
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from plans import services
from plans.models import EventType, Membership, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, Role, StepStatus
from plans.proposals import renewal_defense_draft
from tests.factories import make_plan
from tests.plans.test_graph import parse

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
    closed = (EventType.STEP_CLOSED, f"user:{world.admin.pk}", "PLAN_ABORTED")  # its two waiting steps
    assert ledger_of(plan)[-3:] == [(EventType.PLAN_ABORTED, f"user:{world.admin.pk}", "ABORTED_BY_USER"),
                                    closed, closed]


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
    # 17: the page is a page (its bounded count, the user's tenants read once) besides the rows and their why.
    with django_assert_max_num_queries(17) as few:
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


# --- memberships, accounts, users: writes through the services, choices of the user's tenants only ------


def members_console(user) -> Client:
    client = console(user)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="plans",
                                                         codename__in=["add_membership", "change_membership"]))
    return client


def membership_entries(world) -> list[tuple]:
    return list(PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.MEMBERSHIP_CHANGED)
                .order_by("chain_seq").values_list("actor", "reason_code", "data__after"))


def test_a_tenant_admin_adds_changes_and_deactivates_a_member_each_ledgered(world):
    from tests.factories import UserFactory

    newcomer = UserFactory()
    client = members_console(world.admin)

    added = client.post(reverse("admin:plans_membership_add"),
                        {"tenant": world.tenant.pk, "username": newcomer.username, "role": "SELLER"})
    membership = Membership.objects.get(user=newcomer)
    url = reverse("admin:plans_membership_change", args=[membership.pk])
    promoted = client.post(url, {"role": "PLAN_APPROVER", "is_active": "on"})
    deactivated = client.post(url, {"role": "PLAN_APPROVER"})
    unchanged = client.post(url, {"role": "PLAN_APPROVER"})

    assert [response.status_code for response in (added, promoted, deactivated, unchanged)] == [302] * 4
    membership.refresh_from_db()
    assert (membership.role, membership.is_active) == (Role.PLAN_APPROVER, False)
    actor = f"user:{world.admin.pk}"
    assert membership_entries(world) == [
        (actor, "CREATED", {"role": "SELLER", "is_active": True}),
        (actor, "UPDATED", {"role": "PLAN_APPROVER", "is_active": True}),
        (actor, "UPDATED", {"role": "PLAN_APPROVER", "is_active": False}),
    ]


def test_an_approvers_membership_changes_are_refused_and_write_nothing(world):
    from tests.factories import UserFactory

    client = members_console(world.approver)
    seller = world.seller.memberships.get()

    added = client.post(reverse("admin:plans_membership_add"),
                        {"tenant": world.tenant.pk, "username": UserFactory().username, "role": "SELLER"})
    promoted = client.post(reverse("admin:plans_membership_change", args=[seller.pk]),
                           {"role": "TENANT_ADMIN", "is_active": "on"})

    assert added.status_code == promoted.status_code == 200
    assert set(added.context["adminform"].form.errors) == {"tenant"}  # no tenant they administer to offer
    assert "Only a tenant admin may change tenant settings." in promoted.content.decode()
    assert world.seller.memberships.get().role == Role.SELLER
    assert membership_entries(world) == []


def test_the_last_tenant_admin_is_told_why_they_cannot_step_down(world):
    mine = world.admin.memberships.get()

    response = members_console(world.admin).post(reverse("admin:plans_membership_change", args=[mine.pk]),
                                                 {"role": "SELLER", "is_active": "on"})

    assert response.status_code == 200
    assert "last active tenant admin" in response.content.decode()
    assert world.admin.memberships.get().role == Role.TENANT_ADMIN


def test_a_tenant_admins_member_page_offers_no_other_tenant(world, other_world):
    client = members_console(world.admin)

    add_page = client.get(reverse("admin:plans_membership_add")).content.decode()
    changelist = client.get(reverse("admin:plans_membership_changelist")).content.decode()

    assert world.tenant.slug in add_page
    assert other_world.tenant.slug not in add_page + changelist
    assert other_world.seller.username not in changelist


def test_the_account_owner_is_not_an_editable_field_and_changes_through_account_transfer(world):
    from tests.factories import UserFactory

    new_owner = UserFactory()
    Membership.objects.create(user=new_owner, tenant=world.tenant, role=Role.SELLER)
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    client = console(world.approver)
    account_url = reverse("admin:plans_account_change", args=[world.account.pk])
    owner_url = reverse("admin:plans_account_owner", args=[world.account.pk])

    account_page = client.get(account_url).content.decode()
    owner_page = client.get(owner_url)
    refused = client.post(owner_url, {"new_owner": new_owner.pk})  # no reason: the form says so, nothing moves
    response = client.post(owner_url, {"new_owner": new_owner.pk, "reason": "territory change"}, follow=True)

    assert refused.status_code == 200
    assert "reason" in refused.context["form"].errors
    assert 'name="owner"' not in account_page
    assert owner_url in account_page
    assert {user.pk for user in owner_page.context["form"].fields["new_owner"].queryset} == {
        world.seller.pk, world.approver.pk, world.admin.pk, new_owner.pk}  # active members who may own accounts
    assert messages_of(response) == [f"Owner: {new_owner.username}."]
    world.account.refresh_from_db()
    active.refresh_from_db()
    assert world.account.owner == new_owner
    assert (active.plan_status, active.owner, active.stop_reason_code) == (
        PlanStatus.PAUSED, new_owner, services.OWNERSHIP_CHANGED)
    [entry] = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.ACCOUNT_OWNER_CHANGED)
    assert (entry.actor, entry.data["old_owner_id"], entry.data["new_owner_id"], entry.data["plan_ids"]) == (
        f"user:{world.approver.pk}", world.seller.pk, new_owner.pk, [str(active.pk)])
    assert entry.data["reason"] == "territory change"
    assert "territory change" in entry.explanation


def test_a_seller_gets_no_change_owner_page_and_a_forged_post_changes_nothing(world):
    client = console(world.seller)
    owner_url = reverse("admin:plans_account_owner", args=[world.account.pk])

    account_page = client.get(reverse("admin:plans_account_change", args=[world.account.pk])).content.decode()
    response = client.post(owner_url, {"new_owner": world.admin.pk, "reason": "forged"}, follow=True)

    assert owner_url not in account_page
    assert messages_of(response)[0].startswith("NOT_ALLOWED:")
    world.account.refresh_from_db()
    assert world.account.owner == world.seller
    assert not PlanLedgerEntry.objects.filter(event_type=EventType.ACCOUNT_OWNER_CHANGED).exists()


def test_another_tenants_account_has_no_owner_page(world, other_world):
    response = console(world.admin).post(reverse("admin:plans_account_owner", args=[other_world.account.pk]),
                                         {"new_owner": world.seller.pk})

    assert response.status_code == 404
    other_world.account.refresh_from_db()
    assert other_world.account.owner == other_world.seller


def test_the_tenant_filter_lists_only_the_users_tenants(world, other_world):
    client = console(world.approver)

    for name in ("account", "revenueplan", "planledgerentry", "membership"):
        client.get(reverse(f"admin:plans_{name}_changelist"))
        response = client.get(reverse(f"admin:plans_{name}_changelist"))
        if response.status_code == 403:
            continue
        [tenant_filter] = [spec for spec in response.context["cl"].filter_specs if spec.title == "tenant"]
        assert [label for _, label in tenant_filter.lookup_choices] == [world.tenant.slug], name


def test_a_staff_user_sees_only_their_tenants_members_read_only_and_no_groups(world, other_world):
    client = console(world.admin)
    world.admin.user_permissions.add(*Permission.objects.filter(content_type__app_label="auth"))

    users = client.get(reverse("admin:auth_user_changelist"))
    own_page = client.get(reverse("admin:auth_user_change", args=[world.seller.pk])).content.decode()
    other = client.get(reverse("admin:auth_user_change", args=[other_world.seller.pk]))

    assert {user.pk for user in users.context["cl"].result_list} == {user.pk for user in world.users.values()}
    assert 'name="username"' not in own_page  # read-only
    assert "Password:" not in own_page
    assert world.seller.password.split("$")[-1] not in own_page
    assert other.status_code == 302
    assert client.get(reverse("admin:auth_group_changelist")).status_code == 403


def test_no_admin_page_lists_api_tokens_their_keys_are_credentials(world):
    from django.contrib import admin
    from rest_framework.authtoken.models import Token, TokenProxy

    token = Token.objects.create(user=world.seller)
    world.admin.is_superuser = world.admin.is_staff = True
    world.admin.save()
    client = Client()
    client.force_login(world.admin)

    assert not admin.site.is_registered(TokenProxy)
    assert not admin.site.is_registered(Token)
    assert token.key not in client.get(reverse("admin:index")).content.decode()


def test_a_superuser_sees_tenant_data_only_through_a_membership(world, other_world):
    from tests.factories import UserFactory

    operator = UserFactory(is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(operator)

    before = client.get(reverse("admin:plans_account_changelist"))
    Membership.objects.create(user=operator, tenant=world.tenant, role=Role.VIEWER)
    after = client.get(reverse("admin:plans_account_changelist"))

    assert list(before.context["cl"].result_list) == []
    assert {account.pk for account in after.context["cl"].result_list} == {world.account.pk}
    assert client.get(reverse("admin:auth_user_changelist")).context["cl"].result_count > len(world.users)


def test_the_plan_page_draws_the_step_graph(world):
    plan = draft(world)
    steps = list(plan.steps.order_by("sequence"))
    response = console(world.approver).get(change_url(plan))
    assert response.status_code == 200
    page = response.content.decode()
    start = page.index('<svg xmlns="http://www.w3.org/2000/svg" class="step-graph"')
    svg = page[start:page.index("</svg>", start) + len("</svg>")]
    nodes, edges = parse(svg)
    assert set(nodes) == {str(step.step_id) for step in steps}
    expected = {(str(other), str(step.step_id)) for step in steps for other in step.depends_on}
    assert expected  # the draft's steps are chained
    assert set(edges) == expected
    assert {status for _, status, _ in nodes.values()} == {StepStatus.PENDING}
