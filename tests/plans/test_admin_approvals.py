"""The admin plan page and approvals: the approval's state and what changed since, and the reapprove
button (shown only for a plan held by a stale approval, confirmed like the others, through the service)."""
import uuid

import pytest

from orchestrator import engine
from plans import services
from plans.models import EventType, PlanStatus, Role
from plans.schemas import PlanDraftInput, StepInput
from tests.factories import MembershipFactory, UserFactory
from tests.plans.test_admin import action_url, change_url, console, ledger_of, messages_of

pytestmark = pytest.mark.django_db

BRIEF = "PREP_RENEWAL_BRIEF"


def approved_and_running(world, brief_id=None):
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE", actor=world.seller,
                                 draft=PlanDraftInput(steps=[StepInput(step_id=brief_id or uuid.uuid4(),
                                                                       action_type=BRIEF)]))
    services.plan_approve(plan_id=plan.id, user=world.approver)
    engine.advance_plan(plan.id)
    plan.refresh_from_db()
    return plan


def test_the_plan_page_shows_the_approval_and_what_changed_since(world):
    brief_id = uuid.uuid4()
    plan = approved_and_running(world, brief_id)
    services.step_approve(plan_id=plan.id, step_id=brief_id, user=world.seller)
    client = console(world.approver)
    page = client.get(change_url(plan)).content.decode()
    assert 'data-state="CURRENT"' in page
    assert '<td class="step-approval">CURRENT</td>' in page

    services.plan_revise(plan_id=plan.id, user=world.seller)
    services.plan_edit(plan_id=plan.id, user=world.seller, draft=PlanDraftInput(
        objective="Renew with the new sponsor",
        steps=[StepInput(step_id=brief_id, action_type=BRIEF, parameters={"subject": "New sponsor"})]))
    page = client.get(change_url(plan)).content.decode()

    assert 'data-state="VOID"' in page
    assert "Changed since approval:" in page
    assert "<code>objective</code>: Secure renewal before day -30 → Renew with the new sponsor" in page
    assert "<code>step 1 (PREP_RENEWAL_BRIEF): parameters</code>: none → subject New sponsor" in page
    assert str(brief_id) not in page.split('id="plan-changed-since"')[1].split("</ul>")[0]
    assert '<td class="step-approval">VOID: changed since approval — parameters</td>' in page


def test_the_reapprove_button_shows_for_a_stale_plan_and_runs_it_on(world):
    plan = approved_and_running(world)
    client = console(world.approver)
    assert action_url(plan, "reapprove") not in client.get(change_url(plan)).content.decode()  # ACTIVE
    heir = UserFactory()
    MembershipFactory(user=heir, tenant=world.tenant, role=Role.SELLER)
    services.account_transfer(account_id=world.account.id, new_owner_id=heir.pk, user=world.admin,
                              reason="tests: a new owner")
    plan.refresh_from_db()

    page = client.get(change_url(plan)).content.decode()
    confirm = client.get(action_url(plan, "reapprove"))
    response = client.post(action_url(plan, "reapprove"), {"version": plan.version}, follow=True)

    assert 'data-state="STALE"' in page
    assert action_url(plan, "reapprove") in page
    assert b'id="confirm-action"' in confirm.content
    assert messages_of(response) == ["Reapprove (on the current facts): done."]
    plan.refresh_from_db()
    assert plan.plan_status == PlanStatus.ACTIVE
    assert (EventType.PLAN_REAPPROVED, f"user:{world.approver.pk}", "REAPPROVED") in ledger_of(plan)
    # the owner may resume but not reapprove: no button for them
    services.plan_pause(plan_id=plan.id, user=heir)
    assert action_url(plan, "reapprove") not in console(heir).get(change_url(plan)).content.decode()
