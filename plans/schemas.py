"""Pydantic shapes: RevenuePlanV1 (wire and audit form of a plan) and bounded service inputs."""
from datetime import datetime
from typing import Any
from uuid import UUID

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from plans.models import PlanStatus, PlanStep, RevenuePlan, RiskLevel, StepStatus
from plans.plan_types import get_action_type

MAX_STEPS = 20
MAX_JSON_KEYS = 50


def nests_deeper_than(value, limit: int) -> bool:
    """Whether JSON-like `value` has more than `limit` levels of nesting (a scalar is 0, {} or [] is 1).

    Iterative and stopping at the first level past the limit, so a hostile document nested thousands
    deep costs no recursion (Python's stack would overflow first: a 500 instead of a 400).
    """
    level = [value]
    for depth in range(limit + 1):
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            return False
        if depth == limit:
            return True
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    return False


class PlanStepV1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step_id: UUID
    sequence: int = Field(ge=0)
    action_type: str
    status: StepStatus
    depends_on: list[UUID] = Field(default_factory=list)
    required: bool
    parameters: dict[str, Any] = Field(default_factory=dict)
    attempts: int = Field(default=0, ge=0)
    last_error: str = ""
    skip_reason: str = ""
    risk_level: RiskLevel
    approved_at: datetime | None = None
    approved_by: int | None = None
    next_attempt_at: datetime | None = None
    approval_record: dict[str, Any] = Field(default_factory=dict)
    attempts_before_series: int = Field(default=0, ge=0)
    closed_with_plan: bool = False

    @model_validator(mode="after")
    def required_step_is_never_skipped(self):
        if self.required and self.status == StepStatus.SKIPPED and not self.closed_with_plan:
            raise ValueError("a required step cannot be SKIPPED")
        return self


class StopReasonV1(BaseModel):
    code: str
    detail: str


class RevenuePlanV1(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_id: UUID
    tenant_id: UUID
    account_id: UUID
    plan_type: str
    plan_type_version: int
    objective: str
    plan_status: PlanStatus
    steps: list[PlanStepV1]
    constraints: dict[str, Any] = Field(default_factory=dict)
    owner_id: int | None
    risk_level: RiskLevel
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    approved_at: datetime | None = None
    approved_by: int | None = None
    activated_at: datetime | None = None
    paused_at: datetime | None = None
    completed_at: datetime | None = None
    aborted_at: datetime | None = None
    expired_at: datetime | None = None
    completion_reason: str = ""
    stop_reason: StopReasonV1 | None = None
    next_run_at: datetime | None = None
    created_by: str
    version: int
    approval_record: dict[str, Any] = Field(default_factory=dict)
    edited_by_since_approval: list[int] = Field(default_factory=list)


class StepInput(BaseModel):
    """A step as a person or the proposal generator writes it: no status, no attempts."""

    model_config = ConfigDict(extra="forbid")

    step_id: UUID | None = None
    action_type: str = Field(min_length=1, max_length=64)
    depends_on: list[UUID] = Field(default_factory=list, max_length=MAX_STEPS)
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=MAX_JSON_KEYS)

    @field_validator("parameters")
    @classmethod
    def parameters_fit_the_action_type(cls, parameters: dict, info: ValidationInfo) -> dict:
        """Checked against the action type's parameter model; kept as sent (the model adds no defaults)."""
        spec = get_action_type(info.data.get("action_type", ""))
        if spec is not None:
            try:
                spec.parameters_model.model_validate(parameters)
            except pydantic.ValidationError as error:
                problems = "; ".join(f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
                                     for item in error.errors())
                raise ValueError(f"not valid for {spec.action_type} ({problems})") from None
        return parameters


class PlanDraftInput(BaseModel):
    """What `plan_propose` and `plan_edit` accept."""

    model_config = ConfigDict(extra="forbid")

    objective: str | None = Field(default=None, min_length=1, max_length=500)
    steps: list[StepInput] = Field(min_length=1, max_length=MAX_STEPS)
    constraints: dict[str, Any] = Field(default_factory=dict, max_length=MAX_JSON_KEYS)


def step_to_schema(step: PlanStep) -> PlanStepV1:
    return PlanStepV1(
        step_id=step.step_id,
        sequence=step.sequence,
        action_type=step.action_type,
        status=step.status,
        depends_on=[UUID(str(dep)) for dep in step.depends_on],
        required=step.required,
        parameters=step.parameters,
        attempts=step.attempts,
        last_error=step.last_error,
        skip_reason=step.skip_reason,
        risk_level=step.risk_level,
        approved_at=step.approved_at,
        approved_by=step.approved_by_id,
        next_attempt_at=step.next_attempt_at,
        approval_record=step.approval_record,
        attempts_before_series=step.attempts_before_series,
        closed_with_plan=step.closed_with_plan,
    )


def plan_to_schema(plan: RevenuePlan, steps: list[PlanStep] | None = None) -> RevenuePlanV1:
    """Model → RevenuePlanV1. Pass `steps` when they are already loaded (or prefetched)."""
    plan_steps = steps if steps is not None else list(plan.steps.all())
    stop_reason = (
        StopReasonV1(code=plan.stop_reason_code, detail=plan.stop_reason_detail) if plan.stop_reason_code else None
    )
    return RevenuePlanV1(
        plan_id=plan.id,
        tenant_id=plan.tenant_id,
        account_id=plan.account_id,
        plan_type=plan.plan_type,
        plan_type_version=plan.plan_type_version,
        objective=plan.objective,
        plan_status=plan.plan_status,
        steps=[step_to_schema(step) for step in sorted(plan_steps, key=lambda s: s.sequence)],
        constraints=plan.constraints,
        owner_id=plan.owner_id,
        risk_level=plan.risk_level,
        expires_at=plan.expires_at,
        created_at=plan.created_at,
        updated_at=plan.updated_at,
        approved_at=plan.approved_at,
        approved_by=plan.approved_by_id,
        activated_at=plan.activated_at,
        paused_at=plan.paused_at,
        completed_at=plan.completed_at,
        aborted_at=plan.aborted_at,
        expired_at=plan.expired_at,
        completion_reason=plan.completion_reason,
        stop_reason=stop_reason,
        next_run_at=plan.next_run_at,
        created_by=plan.created_by,
        version=plan.version,
        approval_record=plan.approval_record,
        edited_by_since_approval=plan.edited_by_since_approval,
    )


def plan_values(plan: RevenuePlan, steps: list[PlanStep]) -> dict[str, Any]:
    """plan_to_schema(plan, steps).model_dump(), built straight from the rows, for reads.

    The services validated the plan through plan_to_schema when they wrote it; validating a page of 50
    plans and their steps again cost ~2 ms of CPU a read (tests/api/test_plan_output.py holds the two equal).
    """
    stop_reason = {"code": plan.stop_reason_code, "detail": plan.stop_reason_detail} if plan.stop_reason_code else None
    return {
        "plan_id": plan.id,
        "tenant_id": plan.tenant_id,
        "account_id": plan.account_id,
        "plan_type": plan.plan_type,
        "plan_type_version": plan.plan_type_version,
        "objective": plan.objective,
        "plan_status": plan.plan_status,
        "steps": [_step_values(step) for step in sorted(steps, key=lambda s: s.sequence)],
        "constraints": plan.constraints,
        "owner_id": plan.owner_id,
        "risk_level": plan.risk_level,
        "expires_at": plan.expires_at,
        "created_at": plan.created_at,
        "updated_at": plan.updated_at,
        "approved_at": plan.approved_at,
        "approved_by": plan.approved_by_id,
        "activated_at": plan.activated_at,
        "paused_at": plan.paused_at,
        "completed_at": plan.completed_at,
        "aborted_at": plan.aborted_at,
        "expired_at": plan.expired_at,
        "completion_reason": plan.completion_reason,
        "stop_reason": stop_reason,
        "next_run_at": plan.next_run_at,
        "created_by": plan.created_by,
        "version": plan.version,
        "approval_record": plan.approval_record,
        "edited_by_since_approval": plan.edited_by_since_approval,
    }


def _step_values(step: PlanStep) -> dict[str, Any]:
    return {
        "step_id": step.step_id,
        "sequence": step.sequence,
        "action_type": step.action_type,
        "status": step.status,
        "depends_on": [UUID(str(dep)) for dep in step.depends_on],
        "required": step.required,
        "parameters": step.parameters,
        "attempts": step.attempts,
        "last_error": step.last_error,
        "skip_reason": step.skip_reason,
        "risk_level": step.risk_level,
        "approved_at": step.approved_at,
        "approved_by": step.approved_by_id,
        "next_attempt_at": step.next_attempt_at,
        "approval_record": step.approval_record,
        "attempts_before_series": step.attempts_before_series,
        "closed_with_plan": step.closed_with_plan,
    }


def schema_to_models(schema: RevenuePlanV1) -> tuple[RevenuePlan, list[PlanStep]]:
    """RevenuePlanV1 → unsaved model instances (the inverse of `plan_to_schema`)."""
    plan = RevenuePlan(
        id=schema.plan_id,
        tenant_id=schema.tenant_id,
        account_id=schema.account_id,
        plan_type=schema.plan_type,
        plan_type_version=schema.plan_type_version,
        objective=schema.objective,
        plan_status=schema.plan_status,
        constraints=schema.constraints,
        owner_id=schema.owner_id,
        risk_level=schema.risk_level,
        expires_at=schema.expires_at,
        created_at=schema.created_at,
        updated_at=schema.updated_at,
        approved_at=schema.approved_at,
        approved_by_id=schema.approved_by,
        activated_at=schema.activated_at,
        paused_at=schema.paused_at,
        completed_at=schema.completed_at,
        aborted_at=schema.aborted_at,
        expired_at=schema.expired_at,
        completion_reason=schema.completion_reason,
        stop_reason_code=schema.stop_reason.code if schema.stop_reason else "",
        stop_reason_detail=schema.stop_reason.detail if schema.stop_reason else "",
        next_run_at=schema.next_run_at,
        created_by=schema.created_by,
        version=schema.version,
        approval_record=schema.approval_record,
        edited_by_since_approval=schema.edited_by_since_approval,
    )
    steps = [
        PlanStep(
            step_id=step.step_id,
            plan_id=schema.plan_id,
            sequence=step.sequence,
            action_type=step.action_type,
            status=step.status,
            depends_on=[str(dep) for dep in step.depends_on],
            required=step.required,
            parameters=step.parameters,
            attempts=step.attempts,
            last_error=step.last_error,
            skip_reason=step.skip_reason,
            risk_level=step.risk_level,
            approved_at=step.approved_at,
            approved_by_id=step.approved_by,
            next_attempt_at=step.next_attempt_at,
            approval_record=step.approval_record,
            attempts_before_series=step.attempts_before_series,
            closed_with_plan=step.closed_with_plan,
        )
        for step in schema.steps
    ]
    return plan, steps
