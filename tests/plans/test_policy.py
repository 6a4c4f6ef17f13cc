"""The policy gate (DESIGN §3.5): every reason code and cause, the positive cases, determinism, gate_facts."""
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from plans import policy, selectors
from plans.models import KillSwitch, Membership, PlanStatus, Role, StepStatus
from plans.plan_types import ACTION_TYPES
from plans.policy import GateFacts, evaluate_can_activate, validate_for_approval, validate_structure
from plans.schemas import PlanStepV1, RevenuePlanV1, plan_to_schema
from tests.factories import UserFactory, make_plan

MEETING = "REQUEST_RENEWAL_MEETING"
BRIEF = "PREP_RENEWAL_BRIEF"
ESCALATE = "ESCALATE_SUPPORT_RISK"

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EXPIRES_AT = NOW + timedelta(days=30)
CONFLICTING_PLAN_ID = uuid.UUID(int=999)


def sid(n: int) -> uuid.UUID:
    """A readable, fixed step id: sid(1), sid(2), …"""
    return uuid.UUID(int=n)


def step(action_type: str, sequence: int, *, step_id: uuid.UUID | None = None, depends_on=()) -> PlanStepV1:
    spec = ACTION_TYPES.get(action_type)
    return PlanStepV1(
        step_id=step_id or sid(sequence + 1),
        sequence=sequence,
        action_type=action_type,
        status=StepStatus.PENDING,
        depends_on=list(depends_on),
        required=spec.required if spec else False,
        risk_level=spec.risk_level if spec else "LOW",
    )


def steps_of(*action_types: str) -> list[PlanStepV1]:
    return [step(action_type, sequence) for sequence, action_type in enumerate(action_types)]


def build_plan(steps: list[PlanStepV1] | None = None, **fields) -> RevenuePlanV1:
    """A well-formed DRAFT RENEWAL_DEFENSE plan (meeting, then brief) unless told otherwise."""
    values = {
        "plan_id": uuid.UUID(int=1000),
        "tenant_id": uuid.UUID(int=2000),
        "account_id": uuid.UUID(int=3000),
        "plan_type": "RENEWAL_DEFENSE",
        "plan_type_version": 1,
        "objective": "Secure renewal before day -30",
        "plan_status": PlanStatus.DRAFT,
        "steps": steps if steps is not None else steps_of(MEETING, BRIEF),
        "constraints": {policy.HUMAN_TOUCH_CONSTRAINT: True},
        "owner_id": 7,
        "risk_level": "MEDIUM",
        "expires_at": EXPIRES_AT,
        "created_at": NOW - timedelta(days=1),
        "updated_at": NOW - timedelta(days=1),
        "created_by": "user:7",
        "version": 1,
    }
    values.update(fields)
    return RevenuePlanV1(**values)


def approved_plan(**fields) -> RevenuePlanV1:
    return build_plan(
        plan_status=fields.pop("plan_status", PlanStatus.APPROVED),
        approved_at=fields.pop("approved_at", NOW - timedelta(hours=1)),
        approved_by=8,
        **fields,
    )


ADMIN_FACTS = GateFacts(now=NOW, approver_role=Role.TENANT_ADMIN)
APPROVER_FACTS = GateFacts(now=NOW, approver_role=Role.PLAN_APPROVER)
ACTIVATION_FACTS = GateFacts(now=NOW)


# --- STEP_ORDER_VIOLATION, one case per cause ---------------------------------------------------

STEP_ORDER_CASES = {
    "disallowed action type": ([step(MEETING, 0), step("SEND_GIFT_BASKET", 1)], "'SEND_GIFT_BASKET'"),
    "no steps": ([], "no steps"),
    "unknown dependency": ([step(MEETING, 0), step(BRIEF, 1, depends_on=[sid(77)])], "unknown step"),
    "self dependency": ([step(MEETING, 0), step(BRIEF, 1, depends_on=[sid(2)])], "depends on itself"),
    # Same action type on both ends, so only the cycle (not the default sequence) is at fault.
    "two-step cycle": (
        [step(BRIEF, 0, depends_on=[sid(2)]), step(BRIEF, 1, depends_on=[sid(1)])],
        "cycle",
    ),
    "three-step cycle": (
        [
            step(BRIEF, 0, depends_on=[sid(3)]),
            step(BRIEF, 1, depends_on=[sid(1)]),
            step(BRIEF, 2, depends_on=[sid(2)]),
        ],
        "cycle",
    ),
    "display order against default_sequence": ([step(BRIEF, 0), step(MEETING, 1)], "against the default sequence"),
    "display order against default_sequence, with a gap": (
        [step(ESCALATE, 0), step(MEETING, 1)],
        "against the default sequence",
    ),
    "dependency against default_sequence": (
        [step(MEETING, 0, depends_on=[sid(2)]), step(BRIEF, 1)],
        "MEETING waits for PREP_RENEWAL_BRIEF",
    ),
    "duplicate step ids": ([step(MEETING, 0, step_id=sid(5)), step(BRIEF, 1, step_id=sid(5))], "share one step_id"),
}


@pytest.mark.parametrize("case", list(STEP_ORDER_CASES), ids=list(STEP_ORDER_CASES))
def test_step_order_violation_for_each_cause(case):
    # given
    steps, detail_fragment = STEP_ORDER_CASES[case]
    plan = build_plan(steps=steps)

    # when
    result = validate_for_approval(plan, ADMIN_FACTS)

    # then
    assert not result.valid
    assert set(result.codes) == {policy.STEP_ORDER_VIOLATION}
    assert any(detail_fragment in reason.detail for reason in result.reasons), result.reasons


@pytest.mark.parametrize("case", list(STEP_ORDER_CASES), ids=list(STEP_ORDER_CASES))
def test_a_draft_with_a_step_order_violation_is_refused_by_the_structure_check_too(case):
    steps, _ = STEP_ORDER_CASES[case]

    result = validate_structure(build_plan(steps=steps), GateFacts(now=NOW))

    assert set(result.codes) == {policy.STEP_ORDER_VIOLATION}


# --- the other reason codes ----------------------------------------------------------------------

APPROVAL_REFUSALS = {
    "INVALID_PLAN_TYPE": (build_plan(plan_type="UPSELL_BLITZ"), ADMIN_FACTS, [policy.INVALID_PLAN_TYPE]),
    "HIGH risk, plan approver": (
        build_plan(steps=steps_of(MEETING, BRIEF, ESCALATE)),
        APPROVER_FACTS,
        [policy.RISK_REQUIRES_ELEVATED_AUTHORITY],
    ),
    "HIGH risk, no role": (
        build_plan(steps=steps_of(ESCALATE)),
        GateFacts(now=NOW),
        [policy.RISK_REQUIRES_ELEVATED_AUTHORITY],
    ),
    "HIGH risk, seller": (
        build_plan(steps=steps_of(BRIEF, ESCALATE)),
        GateFacts(now=NOW, approver_role=Role.SELLER),
        [policy.RISK_REQUIRES_ELEVATED_AUTHORITY],
    ),
    "external contact, constraint missing": (
        build_plan(constraints={}),
        ADMIN_FACTS,
        [policy.HUMAN_TOUCH_REQUIRED],
    ),
    "external contact, constraint off": (
        build_plan(constraints={policy.HUMAN_TOUCH_CONSTRAINT: False}),
        ADMIN_FACTS,
        [policy.HUMAN_TOUCH_REQUIRED],
    ),
    "external contact, constraint truthy but not true": (
        build_plan(constraints={policy.HUMAN_TOUCH_CONSTRAINT: "yes"}),
        ADMIN_FACTS,
        [policy.HUMAN_TOUCH_REQUIRED],
    ),
    "expired exactly now": (build_plan(expires_at=NOW), ADMIN_FACTS, [policy.PLAN_EXPIRED]),
    "expired earlier": (build_plan(expires_at=NOW - timedelta(days=3)), ADMIN_FACTS, [policy.PLAN_EXPIRED]),
}


@pytest.mark.parametrize("case", list(APPROVAL_REFUSALS), ids=list(APPROVAL_REFUSALS))
def test_validate_for_approval_refuses_with_the_expected_reason(case):
    plan, facts, expected_codes = APPROVAL_REFUSALS[case]

    result = validate_for_approval(plan, facts)

    assert not result.valid
    assert result.codes == expected_codes
    assert all(reason.detail for reason in result.reasons)


ACTIVATION_REFUSALS = {
    "INVALID_PLAN_TYPE": (approved_plan(plan_type="UPSELL_BLITZ"), ACTIVATION_FACTS, policy.INVALID_PLAN_TYPE, ""),
    "conflicting ACTIVE plan": (
        approved_plan(),
        replace(ACTIVATION_FACTS, conflicting_plan_id=CONFLICTING_PLAN_ID),
        policy.CONFLICT_ACTIVE_PLAN_EXISTS,
        str(CONFLICTING_PLAN_ID),
    ),
    "not approved: DRAFT": (build_plan(), ACTIVATION_FACTS, policy.PRECONDITION_FAILED, "not approved"),
    "not approved: APPROVED without approved_at": (
        build_plan(plan_status=PlanStatus.APPROVED),
        ACTIVATION_FACTS,
        policy.PRECONDITION_FAILED,
        "not approved",
    ),
    "not approved: ABORTED": (
        approved_plan(plan_status=PlanStatus.ABORTED),
        ACTIVATION_FACTS,
        policy.PRECONDITION_FAILED,
        "not approved",
    ),
    "execution killed": (
        approved_plan(),
        replace(ACTIVATION_FACTS, execution_killed_by="tenant kill switch"),
        policy.PRECONDITION_FAILED,
        "tenant kill switch",
    ),
    "owner not an active member": (
        approved_plan(),
        replace(ACTIVATION_FACTS, owner_is_active_member=False),
        policy.PRECONDITION_FAILED,
        "active member",
    ),
    "expired exactly now": (approved_plan(expires_at=NOW), ACTIVATION_FACTS, policy.PLAN_EXPIRED, "expired"),
}


@pytest.mark.parametrize("case", list(ACTIVATION_REFUSALS), ids=list(ACTIVATION_REFUSALS))
def test_evaluate_can_activate_refuses_with_the_expected_reason(case):
    plan, facts, expected_code, detail_fragment = ACTIVATION_REFUSALS[case]

    result = evaluate_can_activate(plan, facts)

    assert not result.can_activate
    assert result.codes == [expected_code]
    assert detail_fragment in result.reasons[0].detail


def test_every_reason_code_is_produced_by_some_case():
    """The taxonomy is stable (DESIGN §3.5); a code no input can produce would be dead weight."""
    produced = {
        code
        for plan, facts, *_ in [*APPROVAL_REFUSALS.values(), *ACTIVATION_REFUSALS.values()]
        for code in validate_for_approval(plan, facts).codes + evaluate_can_activate(plan, facts).codes
    } | {policy.STEP_ORDER_VIOLATION for _ in STEP_ORDER_CASES}
    assert produced == {
        "INVALID_PLAN_TYPE",
        "STEP_ORDER_VIOLATION",
        "RISK_REQUIRES_ELEVATED_AUTHORITY",
        "HUMAN_TOUCH_REQUIRED",
        "CONFLICT_ACTIVE_PLAN_EXISTS",
        "PRECONDITION_FAILED",
        "PLAN_EXPIRED",
    }


def test_all_activation_preconditions_failing_give_every_reason_in_declared_order():
    plan = build_plan(plan_status=PlanStatus.DRAFT, expires_at=NOW - timedelta(seconds=1))
    facts = GateFacts(
        now=NOW,
        execution_killed_by="global kill switch REVPLAN_EXECUTION_DISABLED",
        owner_is_active_member=False,
        conflicting_plan_id=CONFLICTING_PLAN_ID,
    )

    result = evaluate_can_activate(plan, facts)

    assert result.codes == [
        policy.PRECONDITION_FAILED,  # not approved
        policy.PLAN_EXPIRED,
        policy.PRECONDITION_FAILED,  # execution killed
        policy.PRECONDITION_FAILED,  # owner
        policy.CONFLICT_ACTIVE_PLAN_EXISTS,
    ]


# --- positive cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("approver_role", [Role.TENANT_ADMIN, Role.PLAN_APPROVER])
@pytest.mark.parametrize(
    "action_types", [(MEETING, BRIEF), (MEETING,), (BRIEF,)], ids=["meeting+brief", "meeting", "brief"]
)
def test_a_valid_low_or_medium_plan_passes_for_admin_and_approver(approver_role, action_types):
    plan = build_plan(steps=steps_of(*action_types))

    result = validate_for_approval(plan, GateFacts(now=NOW, approver_role=approver_role))

    assert result.valid
    assert result.reasons == ()


def test_a_valid_high_risk_plan_passes_for_a_tenant_admin():
    plan = build_plan(steps=steps_of(MEETING, BRIEF, ESCALATE), risk_level="HIGH")

    assert validate_for_approval(plan, ADMIN_FACTS).valid
    assert validate_for_approval(plan, APPROVER_FACTS).codes == [policy.RISK_REQUIRES_ELEVATED_AUTHORITY]


def test_a_plan_without_external_contact_needs_no_human_touch_constraint():
    plan = build_plan(steps=steps_of(BRIEF), constraints={})

    assert validate_for_approval(plan, APPROVER_FACTS).valid


@pytest.mark.parametrize(
    "steps",
    [
        steps_of(MEETING, ESCALATE),
        steps_of(BRIEF, ESCALATE),
        steps_of(ESCALATE),
        [step(MEETING, 0), step(ESCALATE, 1, depends_on=[sid(1)])],
        [step(MEETING, 0), step(BRIEF, 1, depends_on=[sid(1)]), step(ESCALATE, 2, depends_on=[sid(1), sid(2)])],
        # sequence numbers with gaps are display order only
        [step(MEETING, 3), step(BRIEF, 10, depends_on=[sid(4)])],
    ],
    ids=["skip brief", "skip meeting", "escalate only", "escalate after meeting", "full chain", "gappy sequence"],
)
def test_omitting_steps_of_the_default_sequence_is_fine(steps):
    plan = build_plan(steps=steps)

    result = validate_for_approval(plan, ADMIN_FACTS)

    assert result.valid, result.reasons


def test_one_microsecond_before_expiry_the_plan_is_not_expired():
    plan = build_plan(expires_at=NOW + timedelta(microseconds=1))

    assert validate_for_approval(plan, ADMIN_FACTS).valid
    assert evaluate_can_activate(approved_plan(expires_at=NOW + timedelta(microseconds=1)), ACTIVATION_FACTS).valid


@pytest.mark.parametrize("status", [PlanStatus.APPROVED, PlanStatus.PAUSED])
def test_an_approved_or_paused_plan_may_activate(status):
    result = evaluate_can_activate(approved_plan(plan_status=status), ACTIVATION_FACTS)

    assert result.can_activate
    assert result.codes == []


# --- determinism ---------------------------------------------------------------------------------

DETERMINISM_INPUTS = [
    (build_plan(), ADMIN_FACTS),
    (build_plan(steps=steps_of(MEETING, BRIEF, ESCALATE)), APPROVER_FACTS),
    (build_plan(steps=STEP_ORDER_CASES["three-step cycle"][0], constraints={}), GateFacts(now=NOW)),
    (build_plan(plan_type="NOPE", expires_at=NOW), ADMIN_FACTS),
    (
        build_plan(steps=[step(BRIEF, 0, depends_on=[sid(1), sid(9)]), step("X", 1), step(MEETING, 2)]),
        ADMIN_FACTS,
    ),
    (approved_plan(), replace(ACTIVATION_FACTS, owner_is_active_member=False, conflicting_plan_id=sid(4))),
]


@pytest.mark.parametrize(("plan", "facts"), DETERMINISM_INPUTS)
def test_same_input_gives_the_same_result(plan, facts):
    for gate in (validate_structure, validate_for_approval, evaluate_can_activate):
        first = gate(plan, facts)
        second = gate(plan, facts)
        from_a_copy = gate(plan.model_copy(deep=True), replace(facts))

        assert first == second == from_a_copy
        assert first.reasons == second.reasons  # reason order included


# --- gate_facts over the database ----------------------------------------------------------------


def test_gate_facts_detects_a_conflicting_active_plan(world):
    # given
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    candidate = make_plan(account=world.account, status=PlanStatus.APPROVED)
    make_plan(account=world.account, status=PlanStatus.ACTIVE, plan_type="OTHER_TYPE")  # another type: no conflict

    # when
    facts = selectors.gate_facts(candidate, now=timezone.now())

    # then
    assert facts.conflicting_plan_id == active.id
    assert selectors.gate_facts(active, now=timezone.now()).conflicting_plan_id is None  # not with itself
    assert evaluate_can_activate(plan_to_schema(candidate), facts).codes == [policy.CONFLICT_ACTIVE_PLAN_EXISTS]


def test_gate_facts_reports_no_conflict_when_the_other_plan_is_not_active(world):
    make_plan(account=world.account, status=PlanStatus.PAUSED)
    candidate = make_plan(account=world.account, status=PlanStatus.APPROVED)

    facts = selectors.gate_facts(candidate, now=timezone.now())

    assert facts.conflicting_plan_id is None
    assert evaluate_can_activate(plan_to_schema(candidate), facts).can_activate


def test_gate_facts_reports_an_engaged_tenant_kill_switch(world, other_world):
    plan = make_plan(account=world.account, status=PlanStatus.APPROVED)
    KillSwitch.objects.create(tenant=other_world.tenant, engaged=True)  # someone else's switch
    assert selectors.gate_facts(plan, now=timezone.now()).execution_killed_by == ""

    KillSwitch.objects.create(tenant=world.tenant, engaged=True, reason="incident")
    facts = selectors.gate_facts(plan, now=timezone.now())

    assert facts.execution_killed_by == "tenant kill switch"
    result = evaluate_can_activate(plan_to_schema(plan), facts)
    assert result.codes == [policy.PRECONDITION_FAILED]
    assert "tenant kill switch" in result.reasons[0].detail


def test_gate_facts_ignores_a_released_tenant_kill_switch(world):
    plan = make_plan(account=world.account, status=PlanStatus.APPROVED)
    KillSwitch.objects.create(tenant=world.tenant, engaged=False)

    assert selectors.gate_facts(plan, now=timezone.now()).execution_killed_by == ""


def test_gate_facts_reports_the_global_kill_switch(world, settings):
    plan = make_plan(account=world.account, status=PlanStatus.APPROVED)
    settings.REVPLAN_EXECUTION_DISABLED = True

    facts = selectors.gate_facts(plan, now=timezone.now())

    assert "REVPLAN_EXECUTION_DISABLED" in facts.execution_killed_by
    assert evaluate_can_activate(plan_to_schema(plan), facts).codes == [policy.PRECONDITION_FAILED]


def _owner_is_viewer(world):
    return world.viewer


def _owner_is_inactive(world):
    Membership.objects.filter(user=world.seller, tenant=world.tenant).update(is_active=False)
    return world.seller


def _owner_is_not_a_member(world):
    return UserFactory()


def _owner_is_nobody(world):
    return None


@pytest.mark.parametrize(
    "make_owner", [_owner_is_viewer, _owner_is_inactive, _owner_is_not_a_member, _owner_is_nobody],
    ids=["viewer", "inactive membership", "not a member", "no owner"],
)
def test_gate_facts_owner_who_is_not_an_active_owning_member(world, make_owner):
    owner = make_owner(world)
    plan = make_plan(account=world.account, status=PlanStatus.APPROVED, owner_id=owner.pk if owner else None)

    facts = selectors.gate_facts(plan, now=timezone.now())

    assert facts.owner_is_active_member is False
    assert evaluate_can_activate(plan_to_schema(plan), facts).codes == [policy.PRECONDITION_FAILED]


def test_gate_facts_an_active_seller_owner_lets_the_plan_activate(world):
    plan = make_plan(account=world.account, status=PlanStatus.APPROVED)

    facts = selectors.gate_facts(plan, now=timezone.now())

    assert facts.owner_is_active_member is True
    assert facts.execution_killed_by == ""
    assert facts.conflicting_plan_id is None
    assert evaluate_can_activate(plan_to_schema(plan), facts).can_activate
