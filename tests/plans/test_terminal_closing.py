"""A plan that reaches a terminal state closes its waiting steps (DESIGN §3.2): SKIPPED with the plan's
reason, closed_with_plan, one STEP_CLOSED entry each; a step whose attempt is still out is left for its
outcome. Revise lifts the layers but closes nothing."""
from datetime import timedelta

from django.utils import timezone

from plans import services
from plans.models import EventType, PauseKind, PauseLayer, PlanLedgerEntry, PlanStatus, PlanStep, StepStatus
from tests.factories import make_plan

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


def test_abort_closes_the_waiting_steps_and_leaves_the_one_in_flight(world):
    # given: an ACTIVE plan whose required brief waits for a person, whose escalation has a retry
    # scheduled and whose meeting's attempt is out (started, no outcome yet)
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(MEETING, BRIEF, ESCALATE))
    steps = {step.action_type: step for step in plan.steps.all()}
    assert steps[BRIEF].required
    PlanStep.objects.filter(pk=steps[BRIEF].pk).update(status=StepStatus.PENDING_APPROVAL)
    retry_at = timezone.now() + timedelta(minutes=5)
    PlanStep.objects.filter(pk=steps[ESCALATE].pk).update(attempts=1, next_attempt_at=retry_at)
    PlanStep.objects.filter(pk=steps[MEETING].pk).update(attempts=1, next_attempt_at=None)

    # when
    services.plan_abort(plan_id=plan.id, user=world.seller, reason="the customer signed elsewhere")

    # then
    after = {step.action_type: step for step in plan.steps.all()}
    reason = "The plan was ABORTED: the customer signed elsewhere."
    for closed in (BRIEF, ESCALATE):
        assert (after[closed].status, after[closed].closed_with_plan, after[closed].skip_reason) == (
            StepStatus.SKIPPED, True, reason)
    assert (after[MEETING].status, after[MEETING].closed_with_plan) == (StepStatus.PENDING, False)  # in flight
    entries = list(PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq"))
    assert [(entry.event_type, entry.step_id) for entry in entries] == [
        (EventType.PLAN_ABORTED, None),
        (EventType.STEP_CLOSED, after[BRIEF].step_id),
        (EventType.STEP_CLOSED, after[ESCALATE].step_id),
    ]
    closed_brief = entries[1]
    assert (closed_brief.reason_code, closed_brief.explanation, closed_brief.actor) == (
        "PLAN_ABORTED", reason, f"user:{world.seller.pk}")
    assert closed_brief.data == {"step_status": StepStatus.SKIPPED, "required": True}


def test_a_finished_plan_is_held_by_no_layer_and_revise_lifts_them_without_closing(world):
    # given: two PAUSED plans, each held by a person and by the retry limit
    aborted, revised = (make_plan(account=world.account, status=PlanStatus.PAUSED, paused_at=timezone.now(),
                                  stop_reason_code="PAUSED_BY_USER") for _ in range(2))
    for plan in (aborted, revised):
        for kind in (PauseKind.PERSON, PauseKind.RETRY_LIMIT):
            PauseLayer.objects.create(plan=plan, kind=kind, reason_code=kind, explanation=f"{kind} held it.",
                                      set_by="system:tests", set_at=timezone.now())

    # when
    services.plan_abort(plan_id=aborted.id, user=world.admin, reason="deal lost")
    services.plan_revise(plan_id=revised.id, user=world.admin, reason="add a step")

    # then: no layer is open on either, each lift ledgered; only the aborted plan's steps were closed
    assert not PauseLayer.objects.filter(plan__in=[aborted, revised], lifted_at__isnull=True).exists()
    for plan, move in ((aborted, EventType.PLAN_ABORTED), (revised, EventType.PLAN_REVISED)):
        events = list(PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq")
                      .values_list("event_type", "reason_code"))
        closed = [(EventType.STEP_CLOSED, "PLAN_ABORTED")] * 2 if plan is aborted else []
        assert events == [(move, "ABORTED_BY_USER" if plan is aborted else "REVISED"),
                          (EventType.PAUSE_LAYER_LIFTED, PauseKind.PERSON),
                          (EventType.PAUSE_LAYER_LIFTED, PauseKind.RETRY_LIMIT), *closed]
    assert set(revised.steps.values_list("status", flat=True)) == {StepStatus.PENDING}
