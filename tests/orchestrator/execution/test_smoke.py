"""Quick end-to-end checks of each connector through the ExecutionService."""
from orchestrator.execution.models import IntentStatus, InternalRecord


def test_internal_brief(service, make_intent):
    intent = service.execute(make_intent("PREP_RENEWAL_BRIEF").id)
    assert intent.status == IntentStatus.SUCCEEDED
    assert InternalRecord.objects.get(pk=intent.external_ids["record_id"]).kind == "BRIEF"


def test_crm_task(service, make_intent, crm, crm_for, world):
    crm_for(world.tenant)
    intent = service.execute(make_intent("ESCALATE_SUPPORT_RISK", approved_by=world.admin).id)
    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert intent.external_ids["task_id"] in crm.state.tasks


def test_calendar_event(service, make_intent, calendar_for, world):
    calendar_for(world.tenant)
    intent = service.execute(make_intent("REQUEST_RENEWAL_MEETING").id)
    assert intent.status == IntentStatus.SUCCEEDED, intent.failure_reason
    assert intent.external_ids["event_uid"]
