"""The approver's inbox (plans.inbox): the right items for each role, never another tenant's, gone when
the plan ends, sorted by due time from the plan type's approval SLA, in constant queries."""
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from plans import ledger, services
from plans.inbox import InboxKind, inbox_entries, inbox_items
from plans.lifecycle import Move
from plans.locking import lock_plan
from plans.models import PauseKind, PauseLayer, PlanStatus, PlanStep, Role, StepStatus
from plans.plan_types import RENEWAL_DEFENSE
from plans.waits import refresh_all
from tests.factories import AccountFactory, MembershipFactory, UserFactory, make_plan

pytestmark = pytest.mark.django_db

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"
SLA = RENEWAL_DEFENSE.approval_sla


def layer(plan, kind, *, set_at=None, scope=""):
    """A pause layer as the services would have set it (test set-up)."""
    return PauseLayer.objects.create(plan=plan, kind=kind, scope=scope, reason_code=kind,
                                     explanation=f"Held by {kind} for a test.", set_by="system:tests",
                                     set_at=set_at or timezone.now())


def waiting_step_plan(account, **fields):
    return make_plan(account=account, status=PlanStatus.ACTIVE, action_types=(MEETING,),
                     step_status=StepStatus.PENDING_APPROVAL, **{"activated_at": timezone.now(), **fields})


def paused_plan(account, kind, **fields):
    plan = make_plan(account=account, status=PlanStatus.PAUSED, paused_at=timezone.now(), **fields)
    layer(plan, kind)
    return plan


def seen(user) -> set[tuple[str, object]]:
    return {(item.kind.value, item.plan.id) for item in inbox_items(user, now=timezone.now())}


@pytest.fixture
def waits(world):
    """One of every kind of wait in the world's tenant, and some that wait for nobody in particular."""
    other_seller = UserFactory()
    MembershipFactory(user=other_seller, tenant=world.tenant, role=Role.SELLER)
    theirs = AccountFactory(tenant=world.tenant, owner=other_seller)
    mine = world.account  # owned by world.seller
    return {
        "draft": make_plan(account=mine),  # MEDIUM (meeting + brief), proposed by the system
        "draft_high": make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller),
                                action_types=(MEETING, BRIEF, ESCALATE)),
        "draft_by_approver": make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller),
                                       created_by=f"user:{world.approver.pk}"),
        "draft_edited_by_approver": make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller),
                                              edited_by_since_approval=[world.approver.pk]),
        "step": waiting_step_plan(AccountFactory(tenant=world.tenant, owner=world.seller)),
        "step_theirs": waiting_step_plan(theirs),
        "paused_person": paused_plan(AccountFactory(tenant=world.tenant, owner=world.seller), PauseKind.PERSON),
        "stale": paused_plan(AccountFactory(tenant=world.tenant, owner=world.seller), PauseKind.APPROVAL_STALE),
        "killed": paused_plan(AccountFactory(tenant=world.tenant, owner=world.seller), PauseKind.KILL_SWITCH),
        "running": make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE),
    }


def expected(waits, *names_and_kinds) -> set:
    return {(kind, waits[name].id) for name, kind in names_and_kinds}


def test_each_role_sees_what_it_may_act_on(world, waits):
    draft, step, stale, paused = "DRAFT_APPROVAL", "STEP_APPROVAL", "APPROVAL_STALE", "PAUSED"

    assert seen(world.viewer) == set()
    # A seller: only the waits of the plans they own (the owner's verbs), never an approval of a plan.
    assert seen(world.seller) == expected(waits, ("step", step), ("paused_person", paused))
    # A plan approver: no HIGH-risk DRAFT, not the DRAFT they created, nor the one they edited.
    assert seen(world.approver) == expected(
        waits, ("draft", draft), ("step", step), ("step_theirs", step), ("paused_person", paused), ("stale", stale))
    # A tenant admin: everything a person can act on; nothing held only by a kill switch, nothing running.
    assert seen(world.admin) == expected(
        waits, ("draft", draft), ("draft_high", draft), ("draft_by_approver", draft),
        ("draft_edited_by_approver", draft), ("step", step), ("step_theirs", step), ("paused_person", paused),
        ("stale", stale))


def test_the_verbs_are_the_ones_that_end_each_wait(world, waits):
    items = {item.plan.id: item for item in inbox_items(world.approver, now=timezone.now())}

    assert items[waits["draft"].id].verbs == ("approve", "abort")
    assert items[waits["step"].id].verbs == ("approve_step", "abort")  # the meeting is required: no skip
    assert items[waits["step"].id].step.action_type == MEETING
    assert items[waits["paused_person"].id].verbs == ("resume", "abort")
    assert items[waits["stale"].id].verbs == ("reapprove", "abort")
    seller_items = {item.plan.id: item for item in inbox_items(world.seller, now=timezone.now())}
    assert seller_items[waits["step"].id].verbs == ("approve_step", "abort")


def test_each_item_says_what_it_waits_for_and_what_it_would_do(world, waits):
    items = {item.plan.id: item for item in inbox_items(world.approver, now=timezone.now())}

    assert "waits for a plan approver" in items[waits["draft"].id].waiting_for
    assert "waits for a person's approval" in items[waits["step"].id].waiting_for
    assert "Held by APPROVAL_STALE for a test" in items[waits["stale"].id].waiting_for
    assert "reapproval" in items[waits["stale"].id].waiting_for
    # The DRAFT's preview covers the steps its approval lets run; the step's only that step.
    assert [p["action_type"] for p in items[waits["draft"].id].previews] == [MEETING, BRIEF]
    assert [p["step_id"] for p in items[waits["step"].id].previews] == [items[waits["step"].id].step.step_id]


def test_a_failed_step_waits_for_its_retry_or_skip(world):
    plan = make_plan(account=world.account, status=PlanStatus.PAUSED, action_types=(MEETING, BRIEF, ESCALATE),
                     paused_at=timezone.now())
    escalation = plan.steps.get(action_type=ESCALATE)
    PlanStep.objects.filter(pk=escalation.pk).update(status=StepStatus.FAILED, attempts=3)
    layer(plan, PauseKind.RETRY_LIMIT, scope=str(escalation.step_id))

    [item] = inbox_items(world.seller, now=timezone.now())

    assert (item.kind, item.step.step_id) == (InboxKind.PAUSED, escalation.step_id)
    assert item.verbs == ("skip_step", "retry_step", "abort")  # optional, so it may be skipped too
    # What a retry would send: the failed step's preview, not the plan's.
    assert [preview["step_id"] for preview in item.previews] == [escalation.step_id]


def test_a_resume_is_offered_only_when_nothing_else_holds_the_plan(world):
    plan = paused_plan(world.account, PauseKind.PERSON)
    layer(plan, PauseKind.KILL_SWITCH)

    # Only the kill switch's release lets it run: nothing a resume can do from the inbox.
    assert inbox_items(world.seller, now=timezone.now()) == []


def test_an_inactive_owner_waits_for_a_transfer(world):
    plan = paused_plan(world.account, PauseKind.OWNER_INACTIVE)

    [item] = inbox_items(world.approver, now=timezone.now())

    assert (item.kind, item.plan.id, item.verbs) == (InboxKind.PAUSED, plan.id, ("transfer_account", "abort"))
    assert inbox_items(world.seller, now=timezone.now()) == []  # the seller may not move accounts


def test_a_plan_paused_before_the_layers_waits_for_a_resume(world):
    paused_at = timezone.now() - timedelta(hours=5)
    plan = make_plan(account=world.account, status=PlanStatus.PAUSED, paused_at=paused_at)

    [item] = inbox_items(world.seller, now=timezone.now())

    assert (item.kind, item.plan.id, item.verbs) == (InboxKind.PAUSED, plan.id, ("resume", "abort"))
    assert item.due_at == paused_at + SLA.paused


def test_another_tenants_waits_never_appear(world, other_world):
    make_plan(account=other_world.account)
    waiting_step_plan(other_world.account)
    paused_plan(other_world.account, PauseKind.PERSON)
    mine = make_plan(account=world.account)

    assert seen(world.admin) == {("DRAFT_APPROVAL", mine.id)}
    assert list(inbox_entries(world.admin, tenant_id=other_world.tenant.id)) == []
    assert len(inbox_entries(other_world.admin)) == 3


def test_a_member_of_two_tenants_sees_both_and_can_narrow_to_one(world, other_world):
    MembershipFactory(user=world.approver, tenant=other_world.tenant, role=Role.PLAN_APPROVER)
    ours, theirs = make_plan(account=world.account), make_plan(account=other_world.account)

    assert seen(world.approver) == {("DRAFT_APPROVAL", ours.id), ("DRAFT_APPROVAL", theirs.id)}
    assert [entry.plan_id for entry in inbox_entries(world.approver, tenant_id=other_world.tenant.id)] == [theirs.id]


def test_items_leave_the_inbox_when_their_plan_ends(world):
    draft = make_plan(account=world.account)
    step_plan = waiting_step_plan(AccountFactory(tenant=world.tenant, owner=world.seller))
    paused = paused_plan(AccountFactory(tenant=world.tenant, owner=world.seller), PauseKind.PERSON)
    completed = waiting_step_plan(AccountFactory(tenant=world.tenant, owner=world.seller))
    assert len(inbox_entries(world.approver)) == 4

    for plan in (draft, step_plan, paused):
        services.plan_abort(plan_id=plan.id, user=world.admin, reason="not needed")
    with transaction.atomic():  # the evaluator's objective_met, as the orchestrator makes it
        services.plan_transition(lock_plan(completed.id), Move.COMPLETE, actor="system:tests",
                                 reason_code="objective_met")

    assert list(inbox_entries(world.approver)) == []
    # The waiting steps were closed with their plans, not left PENDING_APPROVAL.
    assert set(PlanStep.objects.filter(plan__in=[step_plan, completed]).values_list("status", flat=True)) == {
        StepStatus.SKIPPED}


def test_approving_takes_the_item_out(world):
    draft = make_plan(account=world.account)
    step_plan = waiting_step_plan(AccountFactory(tenant=world.tenant, owner=world.seller))

    services.plan_approve(plan_id=draft.id, user=world.approver)
    services.step_approve(plan_id=step_plan.id, step_id=step_plan.steps.get().step_id, user=world.approver)

    assert list(inbox_entries(world.approver)) == []


def test_sorted_by_due_time_overdue_first_with_ages(world):
    now = timezone.now()
    # A DRAFT untouched for 47 h is due in 1 h; a step waiting since its activation 30 h ago is 6 h overdue;
    # a person's pause of an hour ago is due in 71 h.
    draft = make_plan(account=world.account, updated_at=now - timedelta(hours=47))
    step_plan = waiting_step_plan(AccountFactory(tenant=world.tenant, owner=world.seller))
    step_plan.activated_at = now - timedelta(hours=30)
    step_plan.save(update_fields=["activated_at"])
    paused = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.PAUSED)
    layer(paused, PauseKind.PERSON, set_at=now - timedelta(hours=1))

    items = inbox_items(world.approver, now=now)

    assert [item.plan.id for item in items] == [step_plan.id, draft.id, paused.id]
    assert [item.overdue for item in items] == [True, False, False]
    assert [round(item.age_seconds / 3600) for item in items] == [30, 47, 1]
    assert [round(item.due_in_seconds / 3600) for item in items] == [-6, 1, 71]
    assert items[1].due_at == draft.updated_at + SLA.draft_approval


def test_a_step_waits_since_the_engine_said_so(world):
    plan = waiting_step_plan(world.account, activated_at=timezone.now() - timedelta(days=3))
    decision = {"reason": "EXTERNAL_CONTACT", "explanation": "It contacts the customer."}
    entry = ledger.step_awaiting_approval(plan, step=plan.steps.get(), actor="system:tests", decision=decision)

    [item] = inbox_items(world.approver, now=timezone.now())

    assert item.waiting_since == entry.occurred_at
    assert item.due_at == entry.occurred_at + SLA.step_approval
    assert "It contacts the customer" in item.waiting_for


def test_a_wait_near_the_renewal_is_due_by_its_cut_off(world):
    # RENEWAL_DEFENSE: a waiting step is due by midnight UTC 35 days before the renewal at the latest.
    now = timezone.now()
    renews = (now + timedelta(days=35, hours=12)).date()
    account = AccountFactory(tenant=world.tenant, owner=world.seller, renewal_date=renews)
    plan = waiting_step_plan(account, activated_at=now - timedelta(hours=2))
    cut_off = datetime.combine(renews - timedelta(days=35), time(0), tzinfo=UTC)

    [item] = inbox_items(world.approver, now=now)

    assert item.plan.id == plan.id
    assert item.due_at == min(cut_off, plan.activated_at + SLA.step_approval)
    assert item.due_at == cut_off  # sooner than the 24 h SLA: the renewal is close


def add_waits(world, count: int) -> None:
    for _ in range(count):
        account = AccountFactory(tenant=world.tenant, owner=world.seller)
        make_plan(account=account)
        waiting_step_plan(AccountFactory(tenant=world.tenant, owner=world.seller))
        paused_plan(AccountFactory(tenant=world.tenant, owner=world.seller), PauseKind.PERSON)


def test_the_same_number_of_queries_for_1_20_and_200_items_of_each_kind(world):
    counts = {}
    for total, add in ((1, 1), (20, 19), (200, 180)):
        add_waits(world, add)
        refresh_all()  # what the beat, or an earlier read, did with the new plans' marks
        with CaptureQueriesContext(connection) as queries:
            items = inbox_items(world.approver, now=timezone.now())
        assert len(items) == 3 * total
        counts[total] = len(queries)

    # The inbox's own (one to see nothing changed, the rest to find what waits, 3 for the page's plans, 3 for
    # why), and the preview describer's, whatever the number of items.
    assert counts[1] == counts[20] == counts[200], counts
