"""The plan state evaluator (DESIGN §3.4): objective, all steps done, expiry, and the facts behind each."""
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from pydantic import ValidationError

from plans import services
from plans.errors import Conflict
from plans.evaluator import (
    ALL_STEPS_DONE,
    EXPIRED,
    OBJECTIVE_MET,
    Outcome,
    SignalFact,
    evaluate,
    expires_at_for,
)
from plans.models import Account, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, StepStatus
from plans.plan_types import ACTION_TYPES, RENEWAL_DEFENSE
from plans.schemas import PlanDraftInput, PlanStepV1, RevenuePlanV1, StepInput
from tests.factories import make_plan

MEETING = "REQUEST_RENEWAL_MEETING"
BRIEF = "PREP_RENEWAL_BRIEF"
ESCALATE = "ESCALATE_SUPPORT_RISK"

RENEWAL_DATE = date(2025, 6, 30)
DEADLINE = datetime(2025, 5, 31, 0, 0, tzinfo=UTC)  # renewal date - 30 days, 00:00 UTC
CREATED_AT = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
NOW = datetime(2025, 4, 15, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)

REQUIRED_ID = uuid.UUID(int=1)
OPTIONAL_ID = uuid.UUID(int=2)


def step(step_id: uuid.UUID, action_type: str, sequence: int, status: str) -> PlanStepV1:
    spec = ACTION_TYPES[action_type]
    return PlanStepV1(
        step_id=step_id,
        sequence=sequence,
        action_type=action_type,
        status=status,
        required=spec.required,
        risk_level=spec.risk_level,
    )


def build_plan(
    *,
    required_status: str = StepStatus.PENDING,
    optional_status: str | None = StepStatus.PENDING,
    plan_status: str = PlanStatus.ACTIVE,
    **fields,
) -> RevenuePlanV1:
    """An ACTIVE RENEWAL_DEFENSE plan: one required step (brief) and one optional (escalation)."""
    steps = [step(REQUIRED_ID, BRIEF, 0, required_status)]
    if optional_status is not None:
        steps.append(step(OPTIONAL_ID, ESCALATE, 1, optional_status))
    values = {
        "plan_id": uuid.UUID(int=1000),
        "tenant_id": uuid.UUID(int=2000),
        "account_id": uuid.UUID(int=3000),
        "plan_type": "RENEWAL_DEFENSE",
        "plan_type_version": 1,
        "objective": "Secure renewal before day -30",
        "plan_status": plan_status,
        "steps": steps,
        "owner_id": 7,
        "risk_level": "HIGH",
        "expires_at": DEADLINE,
        "created_at": CREATED_AT,
        "updated_at": CREATED_AT,
        "created_by": "user:7",
        "version": 3,
    }
    values.update(fields)
    return RevenuePlanV1(**values)


def committed(at: datetime, signal_type: str = "RENEWAL_COMMITTED") -> SignalFact:
    return SignalFact(signal_type=signal_type, observed_at=at)


# --- objective_met -------------------------------------------------------------------------------


@pytest.mark.parametrize("signal_type", ["RENEWAL_COMMITTED", "RENEWAL_CLOSED_WON"])
def test_objective_met_beats_all_steps_done(signal_type):
    # given: both hold
    plan = build_plan(required_status=StepStatus.DONE, optional_status=StepStatus.AUTO_EXECUTED)
    signal_at = NOW - timedelta(days=2)

    # when
    evaluation = evaluate(plan, signals=[committed(signal_at, signal_type)], renewal_date=RENEWAL_DATE, now=NOW)

    # then
    assert evaluation.outcome == Outcome.COMPLETE
    assert evaluation.reason == OBJECTIVE_MET
    assert evaluation.facts["objective_signal"] == {"signal_type": signal_type, "observed_at": signal_at.isoformat()}
    assert evaluation.facts["objective_deadline"] == DEADLINE.isoformat()


def test_objective_met_completes_even_with_unfinished_steps():
    plan = build_plan(required_status=StepStatus.FAILED, optional_status=StepStatus.PENDING)

    evaluation = evaluate(plan, signals=[committed(NOW - timedelta(hours=1))], renewal_date=RENEWAL_DATE, now=NOW)

    assert (evaluation.outcome, evaluation.reason) == (Outcome.COMPLETE, OBJECTIVE_MET)


@pytest.mark.parametrize(
    ("observed_at", "counts"),
    [
        (DEADLINE - US, True),
        (DEADLINE, False),
        (DEADLINE + timedelta(days=1), False),
        (CREATED_AT + timedelta(seconds=1), True),
        (CREATED_AT - US, False),
        (CREATED_AT - timedelta(days=200), False),
    ],
    ids=["just before deadline", "at deadline", "after deadline", "just after creation", "just before creation",
         "a previous cycle"],
)
def test_objective_signal_window(observed_at, counts):
    plan = build_plan()
    # evaluate before the signal's time would expire the plan, so look right after the signal (or just before expiry)
    now = min(max(observed_at, CREATED_AT) + US, DEADLINE - US)

    evaluation = evaluate(plan, signals=[committed(observed_at)], renewal_date=RENEWAL_DATE, now=now)

    if counts:
        assert (evaluation.outcome, evaluation.reason) == (Outcome.COMPLETE, OBJECTIVE_MET)
        assert evaluation.facts["objective_signal"]["observed_at"] == observed_at.isoformat()
    else:
        assert evaluation.outcome == Outcome.CONTINUE
        assert "objective_signal" not in evaluation.facts


@pytest.mark.parametrize("signal_type", ["SUPPORT_RISK", "RENEWAL_AT_RISK", "EXECUTION_SUCCEEDED", "renewal_committed"])
def test_other_signal_types_do_not_meet_the_objective(signal_type):
    evaluation = evaluate(
        build_plan(), signals=[committed(NOW - timedelta(days=1), signal_type)], renewal_date=RENEWAL_DATE, now=NOW
    )

    assert evaluation.outcome == Outcome.CONTINUE


def test_the_earliest_counting_signal_is_the_one_recorded():
    signals = [
        committed(CREATED_AT - timedelta(days=1)),  # before the plan: ignored
        committed(NOW - timedelta(days=1), "RENEWAL_CLOSED_WON"),
        committed(NOW - timedelta(days=3)),
        committed(DEADLINE),  # too late: ignored
    ]

    evaluation = evaluate(build_plan(), signals=signals, renewal_date=RENEWAL_DATE, now=NOW)

    assert evaluation.reason == OBJECTIVE_MET
    assert evaluation.facts["objective_signal"] == {
        "signal_type": "RENEWAL_COMMITTED",
        "observed_at": (NOW - timedelta(days=3)).isoformat(),
    }


def test_without_a_renewal_date_the_objective_deadline_is_the_plan_expiry():
    expires_at = CREATED_AT + timedelta(days=60)
    plan = build_plan(expires_at=expires_at)

    inside = evaluate(plan, signals=[committed(expires_at - US)], renewal_date=None, now=expires_at - US)
    at_expiry = evaluate(plan, signals=[committed(expires_at)], renewal_date=None, now=expires_at - US)

    assert inside.reason == OBJECTIVE_MET
    assert inside.facts["objective_deadline"] == expires_at.isoformat()
    assert at_expiry.outcome == Outcome.CONTINUE


# --- all_steps_done ------------------------------------------------------------------------------

FINISHED_REQUIRED = [StepStatus.DONE, StepStatus.AUTO_EXECUTED]
UNFINISHED_REQUIRED = [StepStatus.PENDING, StepStatus.PENDING_APPROVAL, StepStatus.FAILED]
FINISHED_OPTIONAL = [StepStatus.DONE, StepStatus.AUTO_EXECUTED, StepStatus.SKIPPED]
UNFINISHED_OPTIONAL = [StepStatus.PENDING, StepStatus.PENDING_APPROVAL, StepStatus.FAILED]


@pytest.mark.parametrize("required_status", FINISHED_REQUIRED)
@pytest.mark.parametrize("optional_status", FINISHED_OPTIONAL)
def test_all_steps_done_completes(required_status, optional_status):
    plan = build_plan(required_status=required_status, optional_status=optional_status)

    evaluation = evaluate(plan, signals=[], renewal_date=RENEWAL_DATE, now=NOW)

    assert (evaluation.outcome, evaluation.reason) == (Outcome.COMPLETE, ALL_STEPS_DONE)
    assert evaluation.facts["unfinished_steps"] == []
    assert evaluation.facts["step_statuses"] == {str(REQUIRED_ID): required_status, str(OPTIONAL_ID): optional_status}
    assert "objective_signal" not in evaluation.facts


@pytest.mark.parametrize("required_status", UNFINISHED_REQUIRED)
def test_an_unfinished_required_step_keeps_the_plan_running(required_status):
    plan = build_plan(required_status=required_status, optional_status=StepStatus.DONE)

    evaluation = evaluate(plan, signals=[], renewal_date=RENEWAL_DATE, now=NOW)

    assert evaluation.outcome == Outcome.CONTINUE
    assert evaluation.reason == ""
    assert evaluation.facts["unfinished_steps"] == [str(REQUIRED_ID)]


@pytest.mark.parametrize("optional_status", UNFINISHED_OPTIONAL)
def test_an_unfinished_optional_step_keeps_the_plan_running(optional_status):
    plan = build_plan(required_status=StepStatus.DONE, optional_status=optional_status)

    evaluation = evaluate(plan, signals=[], renewal_date=RENEWAL_DATE, now=NOW)

    assert evaluation.outcome == Outcome.CONTINUE
    assert evaluation.facts["unfinished_steps"] == [str(OPTIONAL_ID)]


def test_a_plan_with_only_finished_required_steps_completes():
    plan = build_plan(required_status=StepStatus.AUTO_EXECUTED, optional_status=None)

    assert evaluate(plan, signals=[], renewal_date=RENEWAL_DATE, now=NOW).reason == ALL_STEPS_DONE


def test_a_plan_with_no_steps_is_not_all_steps_done():
    plan = build_plan(steps=[])

    assert evaluate(plan, signals=[], renewal_date=RENEWAL_DATE, now=NOW).outcome == Outcome.CONTINUE


# --- expiry --------------------------------------------------------------------------------------


def test_expiry_is_at_exactly_expires_at():
    plan = build_plan()

    at_expiry = evaluate(plan, signals=[], renewal_date=RENEWAL_DATE, now=DEADLINE)
    just_before = evaluate(plan, signals=[], renewal_date=RENEWAL_DATE, now=DEADLINE - US)

    assert (at_expiry.outcome, at_expiry.reason) == (Outcome.EXPIRE, EXPIRED)
    assert at_expiry.facts["expires_at"] == DEADLINE.isoformat()
    assert at_expiry.facts["evaluated_at"] == DEADLINE.isoformat()
    assert (just_before.outcome, just_before.reason) == (Outcome.CONTINUE, "")


@pytest.mark.parametrize("plan_status", [PlanStatus.DRAFT, PlanStatus.APPROVED, PlanStatus.PAUSED])
def test_a_non_active_plan_only_expires_never_completes(plan_status):
    # given: objective met and every step done — which would complete an ACTIVE plan
    plan = build_plan(plan_status=plan_status, required_status=StepStatus.DONE, optional_status=StepStatus.DONE)
    signals = [committed(NOW - timedelta(days=1))]

    before = evaluate(plan, signals=signals, renewal_date=RENEWAL_DATE, now=DEADLINE - US)
    at = evaluate(plan, signals=signals, renewal_date=RENEWAL_DATE, now=DEADLINE)

    assert before.outcome == Outcome.CONTINUE
    assert (at.outcome, at.reason) == (Outcome.EXPIRE, EXPIRED)


@pytest.mark.parametrize("plan_status", [PlanStatus.COMPLETED, PlanStatus.ABORTED, PlanStatus.EXPIRED])
def test_a_terminal_plan_neither_completes_nor_expires(plan_status):
    plan = build_plan(plan_status=plan_status, required_status=StepStatus.DONE, optional_status=StepStatus.DONE)

    evaluation = evaluate(
        plan, signals=[committed(NOW)], renewal_date=RENEWAL_DATE, now=DEADLINE + timedelta(days=5)
    )

    assert evaluation.outcome == Outcome.CONTINUE


def test_an_unknown_plan_type_only_expires():
    plan = build_plan(plan_type="UPSELL_BLITZ", required_status=StepStatus.DONE, optional_status=StepStatus.DONE)

    assert evaluate(plan, signals=[committed(NOW)], renewal_date=RENEWAL_DATE, now=NOW).outcome == Outcome.CONTINUE
    assert evaluate(plan, signals=[], renewal_date=RENEWAL_DATE, now=DEADLINE).outcome == Outcome.EXPIRE


def test_the_evaluation_is_deterministic():
    plan = build_plan(required_status=StepStatus.DONE, optional_status=StepStatus.FAILED)
    signals = [committed(CREATED_AT - US), committed(DEADLINE)]

    first = evaluate(plan, signals=signals, renewal_date=RENEWAL_DATE, now=NOW)
    second = evaluate(plan.model_copy(deep=True), signals=list(reversed(signals)), renewal_date=RENEWAL_DATE, now=NOW)

    assert first == second
    assert first.outcome == Outcome.CONTINUE


# --- expires_at_for ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created_at",
    [CREATED_AT, datetime(2025, 3, 1, 23, 59, 59, 999999, tzinfo=UTC), datetime(2025, 5, 30, 23, 0, tzinfo=UTC)],
)
def test_expires_at_with_a_renewal_date_is_day_minus_30_at_midnight_utc(created_at):
    expires_at = expires_at_for(RENEWAL_DEFENSE, renewal_date=RENEWAL_DATE, created_at=created_at)

    assert expires_at == datetime(2025, 5, 31, 0, 0, tzinfo=UTC)
    assert expires_at.utcoffset() == timedelta(0)


def test_expires_at_without_a_renewal_date_is_60_days_after_creation():
    expires_at = expires_at_for(RENEWAL_DEFENSE, renewal_date=None, created_at=CREATED_AT)

    assert expires_at == datetime(2025, 4, 30, 9, 30, tzinfo=UTC)
    assert expires_at - CREATED_AT == timedelta(days=60)


@pytest.mark.parametrize("renewal_date", [date(2031, 1, 15), None], ids=["renewal date", "no renewal date"])
def test_plan_propose_stamps_expires_at_from_the_account(world, renewal_date):
    Account.objects.filter(pk=world.account.pk).update(renewal_date=renewal_date)
    draft = PlanDraftInput(steps=[StepInput(action_type=MEETING), StepInput(action_type=BRIEF)])

    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE", draft=draft,
                                 actor=world.seller)

    stored = RevenuePlan.objects.get(pk=plan.pk)
    if renewal_date is None:
        assert stored.expires_at == stored.created_at + timedelta(days=60)
    else:
        assert stored.expires_at == datetime(2030, 12, 16, 0, 0, tzinfo=UTC)


# --- a required step is never SKIPPED --------------------------------------------------------------


def test_a_required_skipped_step_is_refused_by_the_schema():
    with pytest.raises(ValidationError, match="a required step cannot be SKIPPED"):
        PlanStepV1(
            step_id=uuid.uuid4(), sequence=0, action_type=BRIEF, status=StepStatus.SKIPPED, required=True,
            risk_level="LOW",
        )
    # the optional twin is fine
    assert PlanStepV1(
        step_id=uuid.uuid4(), sequence=0, action_type=ESCALATE, status=StepStatus.SKIPPED, required=False,
        risk_level="HIGH",
    ).status == StepStatus.SKIPPED


def test_a_required_skipped_step_is_refused_by_the_database_on_insert(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)

    with pytest.raises(IntegrityError, match="required_step_skipped_only_with_its_plan"), transaction.atomic():
        PlanStep.objects.create(
            plan=plan, sequence=9, action_type=BRIEF, required=True, status=StepStatus.SKIPPED, risk_level="LOW"
        )

    assert plan.steps.count() == 2


def test_a_required_step_cannot_be_updated_to_skipped_in_the_database(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    required_step = plan.steps.get(action_type=BRIEF)

    required_step.status = StepStatus.SKIPPED
    with pytest.raises(IntegrityError, match="required_step_skipped_only_with_its_plan"), transaction.atomic():
        required_step.save()

    assert PlanStep.objects.get(pk=required_step.pk).status == StepStatus.PENDING


def _approved_plan_with_all_steps(world) -> RevenuePlan:
    draft = PlanDraftInput(steps=[StepInput(action_type=a) for a in (MEETING, BRIEF, ESCALATE)])
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE", draft=draft,
                                 actor=world.seller)
    return services.plan_approve(plan_id=plan.id, user=world.admin)


def _snapshot(plan_id) -> tuple:
    plan = RevenuePlan.objects.get(pk=plan_id)
    steps = list(PlanStep.objects.filter(plan_id=plan_id).order_by("sequence").values())
    ledger_entries = PlanLedgerEntry.objects.filter(plan_id=plan_id).count()
    return plan.version, plan.updated_at, plan.plan_status, steps, ledger_entries


@pytest.mark.parametrize("action_type", [MEETING, BRIEF])
def test_step_skip_refuses_a_required_step_and_changes_nothing(world, action_type):
    # given
    plan = _approved_plan_with_all_steps(world)
    required_step = plan.steps.get(action_type=action_type)
    assert required_step.required
    before = _snapshot(plan.id)

    # when
    with pytest.raises(Conflict) as refused:
        services.step_skip(plan_id=plan.id, step_id=required_step.step_id, user=world.seller, reason="not needed")

    # then
    assert refused.value.code == services.REQUIRED_STEP
    assert _snapshot(plan.id) == before


def test_step_skip_on_the_optional_step_of_the_same_plan_succeeds(world):
    """The control for the test above: the refusal is about `required`, not the plan or the user."""
    plan = _approved_plan_with_all_steps(world)
    optional_step = plan.steps.get(action_type=ESCALATE)
    version_before = RevenuePlan.objects.get(pk=plan.pk).version

    services.step_skip(plan_id=plan.id, step_id=optional_step.step_id, user=world.seller, reason="support is fine")

    optional_step.refresh_from_db()
    assert (optional_step.status, optional_step.skip_reason) == (StepStatus.SKIPPED, "support is fine")
    assert RevenuePlan.objects.get(pk=plan.pk).version == version_before + 1

