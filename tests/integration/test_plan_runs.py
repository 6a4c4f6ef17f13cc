"""Plans advance on their own with a real celery worker and beat: order, step approval, completion."""
import uuid

import pytest

from orchestrator.execution.models import ActionIntent
from plans import services
from plans.models import PlanStatus, PlanStep, StepStatus
from plans.schemas import PlanDraftInput, StepInput
from tests.conftest import build_world
from tests.integration.harness import wait_for

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


def chained_plan(world, *action_types):
    steps, previous = [], None
    for action_type in action_types:
        step = StepInput(step_id=uuid.uuid4(), action_type=action_type, depends_on=[previous] if previous else [])
        steps.append(step)
        previous = step.step_id
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=PlanDraftInput(steps=steps), actor=world.seller)
    return services.plan_approve(plan_id=plan.id, user=world.admin)


def plan_status(plan) -> str:
    plan.refresh_from_db()
    return plan.plan_status


@pytest.mark.timeout(90)
def test_approved_plan_waits_for_the_meeting_approval_then_completes(cluster, radicale):
    # given
    from orchestrator.execution.models import ConnectorConfig

    world = build_world()
    ConnectorConfig.objects.create(tenant=world.tenant, connector="calendar", settings={"url": radicale.url})
    plan = chained_plan(world, MEETING, BRIEF)
    cluster.start_worker()
    cluster.start_beat()
    # when: the beat's tick activates it and the meeting step waits for a person
    meeting = plan.steps.get(action_type=MEETING)
    wait_for(lambda: PlanStep.objects.get(pk=meeting.pk).status == StepStatus.PENDING_APPROVAL, timeout=30,
             what="the meeting to wait for approval")
    assert plan_status(plan) == PlanStatus.ACTIVE
    services.step_approve(plan_id=plan.id, step_id=meeting.step_id, user=world.seller)
    # then
    wait_for(lambda: plan_status(plan) == PlanStatus.COMPLETED, timeout=40, what="the plan to complete")
    assert plan.completion_reason == "all_steps_done"
    statuses = dict(PlanStep.objects.filter(plan=plan).values_list("action_type", "status"))
    assert statuses == {MEETING: StepStatus.DONE, BRIEF: StepStatus.AUTO_EXECUTED}
    intents = {i.action_type: i for i in ActionIntent.objects.filter(plan=plan)}
    assert intents[MEETING].finished_at < intents[BRIEF].started_at
