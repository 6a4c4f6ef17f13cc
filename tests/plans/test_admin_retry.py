"""The plan page's Retry step button: offered for a FAILED step to those who may retry it, confirmed
like the others, and made through services.step_retry."""
import pytest

from plans.models import EventType, PauseKind, PlanStatus, PlanStep, StepStatus
from plans.services.layers import open_layers
from tests.factories import make_plan
from tests.plans.test_admin import change_url, console, ledger_of, messages_of, step_url
from tests.support.stalls import fail_at_the_limit

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE,
                     action_types=["REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF"])
    meeting, brief = plan.steps.order_by("sequence")
    PlanStep.objects.filter(pk=meeting.pk).update(status=StepStatus.DONE)
    brief = fail_at_the_limit(plan, brief)
    return plan, meeting, brief


def test_the_owner_retries_a_failed_step_from_the_plan_page_after_a_confirmation(world, held):
    plan, meeting, brief = held
    client = console(world.seller)

    page = client.get(change_url(plan)).content.decode()
    confirm = client.get(step_url(plan, brief, "retry"))
    response = client.post(step_url(plan, brief, "retry"), {"version": plan.version, "reason": "CRM is back"},
                           follow=True)

    assert step_url(plan, brief, "retry") in page
    assert step_url(plan, meeting, "retry") not in page  # only a FAILED step offers a retry
    assert confirm.status_code == 200
    assert b'id="confirm-action"' in confirm.content
    assert messages_of(response) == ["Retry step: done."]
    brief.refresh_from_db()
    plan.refresh_from_db()
    assert (brief.status, brief.attempts_before_series) == (StepStatus.PENDING, 3)
    assert (plan.plan_status, open_layers(plan)) == (PlanStatus.ACTIVE, [])
    assert [event for event, _, _ in ledger_of(plan)][-3:] == [
        EventType.STEP_RETRIED, EventType.PAUSE_LAYER_LIFTED, EventType.PLAN_RESUMED]


def test_a_viewer_gets_no_retry_button_and_a_forged_post_changes_nothing(world, held):
    plan, _, brief = held
    client = console(world.viewer)
    before = ledger_of(plan)

    page = client.get(change_url(plan)).content.decode()
    response = client.post(step_url(plan, brief, "retry"), {"version": plan.version}, follow=True)

    assert step_url(plan, brief, "retry") not in page
    assert messages_of(response)[0].startswith("NOT_ALLOWED:")
    assert ledger_of(plan) == before
    assert [layer.kind for layer in open_layers(plan)] == [PauseKind.RETRY_LIMIT]
