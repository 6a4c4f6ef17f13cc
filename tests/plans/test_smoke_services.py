"""Happy path through the services: propose → approve → activate (the orchestrator's advance) → pause → resume
→ abort."""
from orchestrator import engine
from plans import services
from plans.models import EventType, PlanLedgerEntry, PlanStatus
from plans.proposals import renewal_defense_draft


def test_plan_walks_its_happy_path(world):
    plan = services.plan_propose(
        account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
        draft=renewal_defense_draft(signal_types=set()), actor=world.seller,
    )
    assert plan.plan_status == PlanStatus.DRAFT
    assert plan.steps.count() == 2
    services.plan_approve(plan_id=plan.id, user=world.approver)
    engine.advance_plan(plan.id)  # activates it; the meeting contacts the customer, so it waits for a person
    services.plan_pause(plan_id=plan.id, user=world.seller, reason="customer on holiday")
    services.plan_resume(plan_id=plan.id, user=world.seller)
    plan = services.plan_abort(plan_id=plan.id, user=world.admin, reason="deal lost")
    assert plan.plan_status == PlanStatus.ABORTED
    events = list(PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq").values_list("event_type", flat=True))
    assert events == [
        EventType.PLAN_CREATED, EventType.PLAN_APPROVED, EventType.PLAN_ACTIVATED, EventType.STEP_AWAITING_APPROVAL,
        EventType.PLAN_PAUSED, EventType.PAUSE_LAYER_ADDED, EventType.PAUSE_LAYER_LIFTED, EventType.PLAN_RESUMED,
        EventType.PLAN_ABORTED, EventType.STEP_CLOSED, EventType.STEP_CLOSED,  # the two waiting steps
    ]
    assert plan.version == 6
