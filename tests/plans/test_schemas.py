"""RevenuePlanV1 round-trips (DESIGN §3.1): model → schema → model is identity, and the JSON wire form too."""
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from pydantic import ValidationError

from orchestrator import engine
from plans import services
from plans.models import Account, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.schemas import PlanDraftInput, PlanStepV1, RevenuePlanV1, StepInput, plan_to_schema, schema_to_models

MEETING = "REQUEST_RENEWAL_MEETING"
BRIEF = "PREP_RENEWAL_BRIEF"
ESCALATE = "ESCALATE_SUPPORT_RISK"


def concrete_values(instance) -> dict:
    """Every column of a row, by attname (tenant_id, not tenant), non-editable ones included."""
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def _propose(world, *, actor=None) -> RevenuePlan:
    meeting_id, brief_id, escalate_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    draft = PlanDraftInput(
        objective="Keep Acme past the June renewal",
        constraints={"quiet_hours": {"start": "18:00", "end": "08:00"}},
        steps=[
            StepInput(
                step_id=meeting_id,
                action_type=MEETING,
                parameters={"attendees": ["cfo@acme.test", "cs@acme.test"], "duration_minutes": 45, "tentative": True},
            ),
            StepInput(
                step_id=brief_id,
                action_type=BRIEF,
                depends_on=[meeting_id],
                parameters={"sections": ["usage", "support"], "weight": 1.5, "note": "ünïcode ✓"},
            ),
            StepInput(step_id=escalate_id, action_type=ESCALATE, depends_on=[meeting_id, brief_id]),
        ],
    )
    return services.plan_propose(
        account_id=world.account.id, plan_type="RENEWAL_DEFENSE", draft=draft, actor=actor or world.seller,
        inputs_summary={"signals": ["SUPPORT_RISK"]},
    )


def _activate_and_approve_meeting(world, plan: RevenuePlan) -> RevenuePlan:
    services.plan_approve(plan_id=plan.id, user=world.admin)
    # The orchestrator activates it; the autonomy policy asks for a human touch on the meeting step.
    engine.advance_plan(plan.id)
    meeting = plan.steps.get(action_type=MEETING, status=StepStatus.PENDING_APPROVAL)
    return services.step_approve(plan_id=plan.id, step_id=meeting.step_id, user=world.seller)


def _stage_draft(world):
    return _propose(world)


def _stage_draft_without_owner(world):
    Account.objects.filter(pk=world.account.pk).update(owner=None, renewal_date=None)
    return _propose(world, actor=world.approver)


def _stage_approved(world):
    plan = _propose(world)
    return services.plan_approve(plan_id=plan.id, user=world.admin)


def _stage_active_with_approved_step(world):
    return _activate_and_approve_meeting(world, _propose(world))


def _stage_paused(world):
    plan = _activate_and_approve_meeting(world, _propose(world))
    return services.plan_pause(plan_id=plan.id, user=world.seller, reason="Customer is on holiday until Monday.")


def _stage_aborted_with_a_skipped_step(world):
    plan = _activate_and_approve_meeting(world, _propose(world))
    escalate = plan.steps.get(action_type=ESCALATE)
    services.step_skip(plan_id=plan.id, step_id=escalate.step_id, user=world.approver, reason="support is calm")
    return services.plan_abort(plan_id=plan.id, user=world.admin, reason="Deal lost to a competitor.")


def _stage_every_field_set(world):
    """Every nullable or defaulted column holds a non-default value, so a dropped mapping shows."""
    plan = _activate_and_approve_meeting(world, _propose(world))
    now = timezone.now()
    RevenuePlan.objects.filter(pk=plan.pk).update(
        paused_at=now - timedelta(hours=3), completed_at=now - timedelta(hours=2), aborted_at=now - timedelta(hours=1),
        expired_at=now, completion_reason="all_steps_done", stop_reason_code="SOME_CODE",
        stop_reason_detail="Some sentence.", next_run_at=now + timedelta(minutes=5), plan_type_version=7, version=42,
    )
    PlanStep.objects.filter(plan=plan, action_type=BRIEF).update(
        status=StepStatus.FAILED, attempts=2, last_error="calendar said 503", approved_at=now,
        approved_by=world.approver,
    )
    PlanStep.objects.filter(plan=plan, action_type=ESCALATE).update(
        status=StepStatus.SKIPPED, skip_reason="support is calm", attempts=1
    )
    return plan


STAGES = [
    _stage_draft,
    _stage_draft_without_owner,
    _stage_approved,
    _stage_active_with_approved_step,
    _stage_paused,
    _stage_aborted_with_a_skipped_step,
    _stage_every_field_set,
]


@pytest.fixture(params=STAGES, ids=[stage.__name__.removeprefix("_stage_") for stage in STAGES])
def stored_plan(request, world) -> RevenuePlan:
    """A plan at some point of its life, freshly read back from the database."""
    plan = request.param(world)
    return RevenuePlan.objects.get(pk=plan.pk)


def test_the_stages_hold_what_the_round_trip_must_carry(stored_plan):
    """Guard: the fixture really produces dependencies, parameters and its stage's fields."""
    steps = list(stored_plan.steps.all())
    assert len(steps) == 3
    assert any(step.depends_on for step in steps)
    assert any(step.parameters for step in steps)
    if stored_plan.plan_status in (PlanStatus.ACTIVE, PlanStatus.PAUSED, PlanStatus.ABORTED):
        assert stored_plan.approved_by_id is not None
        assert any(step.approved_by_id is not None and step.approved_at is not None for step in steps)
    if stored_plan.plan_status in (PlanStatus.PAUSED, PlanStatus.ABORTED):
        assert stored_plan.stop_reason_code


def test_model_to_schema_to_model_is_identity(stored_plan):
    # given
    stored_steps = list(PlanStep.objects.filter(plan=stored_plan).order_by("sequence"))

    # when
    schema = plan_to_schema(stored_plan)
    plan2, steps2 = schema_to_models(schema)

    # then
    assert concrete_values(plan2) == concrete_values(stored_plan)
    assert [concrete_values(step) for step in steps2] == [concrete_values(step) for step in stored_steps]
    assert plan_to_schema(plan2, steps2) == schema


def test_schema_survives_json(stored_plan):
    schema = plan_to_schema(stored_plan)

    wire = schema.model_dump_json()

    assert RevenuePlanV1.model_validate_json(wire) == schema
    assert RevenuePlanV1.model_validate(schema.model_dump(mode="json")) == schema


def test_schema_uses_the_wire_names_of_the_design(world):
    schema = plan_to_schema(RevenuePlan.objects.get(pk=_propose(world).pk))
    wire = schema.model_dump(mode="json")

    assert wire["plan_id"] == str(schema.plan_id)
    assert wire["plan_status"] == "DRAFT"
    assert wire["owner_id"] == world.seller.pk
    assert wire["created_by"] == f"user:{world.seller.pk}"
    assert wire["stop_reason"] is None
    assert [step["action_type"] for step in wire["steps"]] == [MEETING, BRIEF, ESCALATE]
    assert wire["steps"][2]["depends_on"] == [wire["steps"][0]["step_id"], wire["steps"][1]["step_id"]]
    assert {"step_id", "status", "required", "parameters", "attempts", "risk_level"} <= set(wire["steps"][0])


def test_unknown_fields_are_refused(world):
    schema = plan_to_schema(RevenuePlan.objects.get(pk=_propose(world).pk))
    wire = schema.model_dump(mode="json")

    with pytest.raises(ValidationError) as on_plan:
        RevenuePlanV1.model_validate({**wire, "discount_percent": 50})
    wire["steps"][0]["run_as_admin"] = True
    with pytest.raises(ValidationError) as on_step:
        RevenuePlanV1.model_validate(wire)

    assert [error["type"] for error in on_plan.value.errors()] == ["extra_forbidden"]
    assert [error["loc"] for error in on_plan.value.errors()] == [("discount_percent",)]
    assert [error["loc"] for error in on_step.value.errors()] == [("steps", 0, "run_as_admin")]


def test_unknown_fields_are_refused_in_json_too(world):
    schema = plan_to_schema(RevenuePlan.objects.get(pk=_propose(world).pk))
    wire = schema.model_dump_json()

    with pytest.raises(ValidationError) as refused:
        RevenuePlanV1.model_validate_json(wire[:-1] + ', "surprise": 1}')

    assert [(error["type"], error["loc"]) for error in refused.value.errors()] == [("extra_forbidden", ("surprise",))]


def test_a_step_refuses_unknown_fields_on_its_own():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PlanStepV1(
            step_id=uuid.uuid4(), sequence=0, action_type=BRIEF, status=StepStatus.PENDING, required=True,
            risk_level="LOW", priority="urgent",
        )
