"""The full 7x7 plan status matrix (DESIGN §3.2) and the step status matrix (DESIGN §3.3), driven
through the real service functions."""
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from plans import lifecycle, services
from plans.errors import Conflict
from plans.evaluator import ALL_STEPS_DONE, EXPIRED, Evaluation, Outcome
from plans.lifecycle import StepMove
from plans.locking import lock_account_then_plan, lock_plan
from plans.models import (
    EventType,
    PauseKind,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    StepStatus,
)
from tests.factories import make_plan

S = PlanStatus

# Written by hand from DESIGN §3.2; deliberately not derived from plans.lifecycle.
EXPECTED_ALLOWED = frozenset({
    (S.DRAFT, S.APPROVED),
    (S.DRAFT, S.ABORTED),
    (S.DRAFT, S.EXPIRED),
    (S.APPROVED, S.ACTIVE),
    (S.APPROVED, S.DRAFT),
    (S.APPROVED, S.ABORTED),
    (S.APPROVED, S.EXPIRED),
    (S.ACTIVE, S.DRAFT),
    (S.ACTIVE, S.PAUSED),
    (S.ACTIVE, S.ABORTED),
    (S.ACTIVE, S.EXPIRED),
    (S.ACTIVE, S.COMPLETED),
    (S.PAUSED, S.ACTIVE),
    (S.PAUSED, S.DRAFT),
    (S.PAUSED, S.ABORTED),
    (S.PAUSED, S.EXPIRED),
})

# Every service function that moves a plan, the status it moves to and the ledger event it writes.
VERB_TARGET_AND_EVENT: dict[str, tuple[PlanStatus, EventType]] = {
    "approve": (S.APPROVED, EventType.PLAN_APPROVED),
    "activate": (S.ACTIVE, EventType.PLAN_ACTIVATED),
    "resume": (S.ACTIVE, EventType.PLAN_RESUMED),
    "pause": (S.PAUSED, EventType.PLAN_PAUSED),
    "pause_by_policy": (S.PAUSED, EventType.PLAN_PAUSED),
    "revise": (S.DRAFT, EventType.PLAN_REVISED),
    "abort": (S.ABORTED, EventType.PLAN_ABORTED),
    "abort_by_policy": (S.ABORTED, EventType.PLAN_ABORTED),
    "expire": (S.EXPIRED, EventType.PLAN_EXPIRED),
    "complete": (S.COMPLETED, EventType.PLAN_COMPLETED),
}

# For each allowed pair, the verbs that make that move (by hand). Any other verb aiming at the same
# target from the same status must be refused (e.g. resume is not how an APPROVED plan starts).
VERBS_FOR_ALLOWED_PAIR: dict[tuple[PlanStatus, PlanStatus], tuple[str, ...]] = {
    (S.DRAFT, S.APPROVED): ("approve",),
    (S.DRAFT, S.ABORTED): ("abort", "abort_by_policy"),
    (S.DRAFT, S.EXPIRED): ("expire",),
    (S.APPROVED, S.ACTIVE): ("activate",),
    (S.APPROVED, S.DRAFT): ("revise",),
    (S.APPROVED, S.ABORTED): ("abort", "abort_by_policy"),
    (S.APPROVED, S.EXPIRED): ("expire",),
    (S.ACTIVE, S.DRAFT): ("revise",),
    (S.ACTIVE, S.PAUSED): ("pause", "pause_by_policy"),
    (S.ACTIVE, S.ABORTED): ("abort", "abort_by_policy"),
    (S.ACTIVE, S.EXPIRED): ("expire",),
    (S.ACTIVE, S.COMPLETED): ("complete",),
    (S.PAUSED, S.ACTIVE): ("resume",),
    (S.PAUSED, S.DRAFT): ("revise",),
    (S.PAUSED, S.ABORTED): ("abort", "abort_by_policy"),
    (S.PAUSED, S.EXPIRED): ("expire",),
}

def _activate(plan_id) -> None:
    """As orchestrator.engine activates: under the account's and then the plan's row lock."""
    with transaction.atomic():
        plan = lock_account_then_plan(plan_id)
        services.plan_activate_locked(plan, steps=list(plan.steps.all()), component="orchestrator")


def _settle(plan_id, evaluation: Evaluation) -> None:
    """As orchestrator.engine settles a plan once the evaluator said `evaluation`, under the plan's lock.

    The engine asks only when the evaluator said so; the refused cases hand over a verdict it would
    not give, so what refuses them is the lifecycle's table.
    """
    with transaction.atomic():
        plan = lock_plan(plan_id)
        services.plan_settle_locked(plan, evaluation, steps=list(plan.steps.all()), component="orchestrator")


VERBS: dict[str, Callable] = {
    "approve": lambda plan_id, user: services.plan_approve(plan_id=plan_id, user=user),
    "activate": lambda plan_id, user: _activate(plan_id),
    "resume": lambda plan_id, user: services.plan_resume(plan_id=plan_id, user=user),
    "pause": lambda plan_id, user: services.plan_pause(plan_id=plan_id, user=user, reason="customer on holiday"),
    "pause_by_policy": lambda plan_id, user: services.plan_pause_by_policy(
        plan_id=plan_id, component="tests", kind=PauseKind.RETRY_LIMIT, scope="step-1",
        reason_code="RETRY_LIMIT_EXCEEDED", explanation="Step failed 3 times.",
    ),
    "revise": lambda plan_id, user: services.plan_revise(plan_id=plan_id, user=user, reason="add a step"),
    "abort": lambda plan_id, user: services.plan_abort(plan_id=plan_id, user=user, reason="deal lost"),
    "abort_by_policy": lambda plan_id, user: services.plan_abort_by_policy(
        plan_id=plan_id, component="tests", reason_code="UNRECOVERABLE", explanation="The connector is gone."
    ),
    "expire": lambda plan_id, user: _settle(plan_id, Evaluation(Outcome.EXPIRE, EXPIRED)),
    "complete": lambda plan_id, user: _settle(plan_id, Evaluation(Outcome.COMPLETE, ALL_STEPS_DONE)),
}

# The columns a plan in each status carries, as if it had got there through the services.
STATUS_FIELDS: dict[PlanStatus, dict] = {
    S.DRAFT: {},
    S.APPROVED: {},
    S.ACTIVE: {"activated_at": "past"},
    S.PAUSED: {"activated_at": "past", "paused_at": "past", "stop_reason_code": "PAUSED_BY_USER"},
    S.COMPLETED: {"activated_at": "past", "completed_at": "past", "completion_reason": "all_steps_done",
                  "stop_reason_code": "all_steps_done"},
    S.ABORTED: {"aborted_at": "past", "stop_reason_code": "ABORTED_BY_USER"},
    S.EXPIRED: {"expired_at": "past", "stop_reason_code": "expired"},
}


def _plan_in(world, status: PlanStatus, verb: str) -> RevenuePlan:
    """A plan in `status` with whatever the verb needs to succeed except the right status."""
    now = timezone.now()
    fields = {name: (now - timedelta(minutes=2) if value == "past" else value)
              for name, value in STATUS_FIELDS[status].items()}
    if verb == "expire":
        fields["expires_at"] = now - timedelta(minutes=1)
    if verb == "complete":
        fields["step_status"] = StepStatus.DONE
    # created by the system, so the tenant admin acting below is not the creator
    plan = make_plan(account=world.account, status=status, created_by="system:tests", **fields)
    if status == S.PAUSED:
        _hold(plan, PauseKind.PERSON)  # what its stop reason says: a person paused it
    return plan


def _hold(plan: RevenuePlan, kind: PauseKind, scope: str = "") -> PauseLayer:
    """An open layer, as the services leave it when they pause a plan."""
    return PauseLayer.objects.create(plan=plan, kind=kind, scope=scope, reason_code=f"{kind}_REASON",
                                     explanation=f"Held by {kind}.", set_by="system:tests",
                                     set_at=timezone.now() - timedelta(minutes=2))


def _open_kinds(plan_id) -> list[str]:
    return sorted(PauseLayer.objects.filter(plan_id=plan_id, lifted_at__isnull=True).values_list("kind", flat=True))


def _layer_rows(plan_id) -> list[dict]:
    return list(PauseLayer.objects.filter(plan_id=plan_id).order_by("id").values())


# The entries an accepted move writes, in order, by hand from DESIGN §3.2: the move's entry; a pause
# adds its layer after it; a resume lifts the last layer (the plan's PERSON one) before it; revise and
# the terminal moves lift every open layer after it; a terminal move then closes each waiting step
# (the plan's two PENDING steps; a completed plan has none waiting).
def _expected_entries(from_status: PlanStatus, verb: str) -> list[EventType]:
    _, event = VERB_TARGET_AND_EVENT[verb]
    if verb in ("pause", "pause_by_policy"):
        return [event, EventType.PAUSE_LAYER_ADDED]
    if verb == "resume":
        return [EventType.PAUSE_LAYER_LIFTED, event]
    lifted = [EventType.PAUSE_LAYER_LIFTED] if from_status == S.PAUSED else []
    if verb == "revise":
        return [event, *lifted]
    if verb in ("abort", "abort_by_policy", "expire"):
        return [event, *lifted, EventType.STEP_CLOSED, EventType.STEP_CLOSED]
    return [event]


# The open layer each pause leaves (kind, scope).
PAUSE_LAYER_OF = {"pause": (PauseKind.PERSON, ""), "pause_by_policy": (PauseKind.RETRY_LIMIT, "step-1")}


def _plan_row(plan_id) -> dict:
    return RevenuePlan.objects.filter(pk=plan_id).values().get()


def _step_rows(plan_id) -> list[dict]:
    return list(PlanStep.objects.filter(plan_id=plan_id).order_by("sequence").values())


# Not a move but one more layer on a PAUSED plan (test_a_new_cause_on_a_paused_plan_adds_a_layer). A
# person's pause of the matrix's PAUSED plan stays refused: a person already holds it (_plan_in).
LAYER_ONLY_CASES = {(S.PAUSED, S.PAUSED, "pause_by_policy")}


def _allowed_cases():
    for pair, verbs in sorted(VERBS_FOR_ALLOWED_PAIR.items()):
        for verb in verbs:
            yield pytest.param(*pair, verb, id=f"{pair[0]}->{pair[1]}:{verb}")


def _refused_cases():
    for source in PlanStatus:
        for target in PlanStatus:
            for verb, (verb_target, _) in VERB_TARGET_AND_EVENT.items():
                if verb_target == target and verb not in VERBS_FOR_ALLOWED_PAIR.get((source, target), ()):
                    if (source, target, verb) in LAYER_ONLY_CASES:
                        continue
                    yield pytest.param(source, target, verb, id=f"{source}->{target}:{verb}")


def test_hand_written_allowed_set_is_the_lifecycle_table():
    assert len(EXPECTED_ALLOWED) == 16
    assert set(VERBS_FOR_ALLOWED_PAIR) == EXPECTED_ALLOWED
    assert lifecycle.ALLOWED_TRANSITIONS == EXPECTED_ALLOWED


def test_every_pair_of_the_matrix_is_exercised():
    exercised = {(case.values[0], case.values[1]) for case in [*_allowed_cases(), *_refused_cases()]}
    exercised |= {(source, target) for source, target, _ in LAYER_ONLY_CASES}
    assert exercised == {(source, target) for source in PlanStatus for target in PlanStatus}
    assert len(exercised) == 49
    # a terminal plan is offered every verb, and every one of them is in the refused set
    for terminal in (S.COMPLETED, S.ABORTED, S.EXPIRED):
        refused_verbs = {case.values[2] for case in _refused_cases() if case.values[0] == terminal}
        assert refused_verbs == set(VERBS)
    assert ("PAUSED", "PAUSED", "pause") in {tuple(case.values) for case in _refused_cases()}


@pytest.mark.parametrize(("from_status", "to_status", "verb"), list(_allowed_cases()))
def test_allowed_move_changes_status_and_writes_its_ledger_entries(world, from_status, to_status, verb):
    # given
    plan = _plan_in(world, from_status, verb)
    before = _plan_row(plan.id)
    expected_target, expected_event = VERB_TARGET_AND_EVENT[verb]
    assert expected_target == to_status
    ledger_ids_before = set(PlanLedgerEntry.objects.filter(tenant=world.tenant).values_list("id", flat=True))

    # when
    VERBS[verb](plan.id, world.admin)

    # then
    after = _plan_row(plan.id)
    assert after["plan_status"] == to_status
    assert after["version"] == before["version"] + 1
    new_entries = list(PlanLedgerEntry.objects.filter(tenant=world.tenant).exclude(id__in=ledger_ids_before)
                       .order_by("id"))
    assert [(entry.plan_id, entry.event_type) for entry in new_entries] == [
        (plan.id, event) for event in _expected_entries(from_status, verb)]
    entry = next(entry for entry in new_entries if entry.event_type == expected_event)
    assert entry.data["from_status"] == from_status
    assert entry.data["to_status"] == to_status
    assert entry.data["plan"]["plan_status"] == to_status
    if to_status in (S.PAUSED, S.ABORTED, S.EXPIRED, S.COMPLETED):
        # a stopped plan says why, and says the same as its ledger entry
        assert after["stop_reason_code"]
        assert after["stop_reason_code"] == entry.reason_code
    else:
        assert after["stop_reason_code"] == ""
    if to_status == S.DRAFT:
        assert after["approved_at"] is None
        assert after["approved_by_id"] is None
    if to_status == S.APPROVED:
        assert after["approved_by_id"] == world.admin.pk
        assert after["approved_at"] is not None
    # a PAUSED plan is held by the layer that paused it, and by none once it is out of PAUSED
    open_layers = list(PauseLayer.objects.filter(plan_id=plan.id, lifted_at__isnull=True).values_list("kind", "scope"))
    assert open_layers == ([PAUSE_LAYER_OF[verb]] if to_status == S.PAUSED else [])
    steps = _step_rows(plan.id)
    if to_status in (S.ABORTED, S.EXPIRED):
        # the waiting steps were closed with the plan, with its reason
        assert {(step["status"], step["closed_with_plan"]) for step in steps} == {(T.SKIPPED, True)}
        assert all(step["skip_reason"].startswith(f"The plan was {to_status}: ") for step in steps)
    else:
        assert not any(step["closed_with_plan"] for step in steps)


@pytest.mark.parametrize(("from_status", "to_status", "verb"), list(_refused_cases()))
def test_refused_move_is_an_invalid_transition_and_changes_nothing(world, from_status, to_status, verb):
    # given
    plan = _plan_in(world, from_status, verb)
    plan_before, steps_before, layers_before = _plan_row(plan.id), _step_rows(plan.id), _layer_rows(plan.id)
    ledger_count_before = PlanLedgerEntry.objects.filter(tenant=world.tenant).count()

    # when
    with pytest.raises(Conflict) as refused:
        VERBS[verb](plan.id, world.admin)

    # then
    assert refused.value.code == "INVALID_TRANSITION"
    assert _plan_row(plan.id) == plan_before
    assert _step_rows(plan.id) == steps_before
    assert _layer_rows(plan.id) == layers_before
    assert PlanLedgerEntry.objects.filter(tenant=world.tenant).count() == ledger_count_before


# A PAUSED plan held by `held_by`, then `verb`: the layers open afterwards, or the refusal (by hand,
# DESIGN §3.2: a new cause adds a layer; the same cause twice is one layer; a person pauses once).
LAYER_STACKING = [
    pytest.param(PauseKind.PERSON, "pause_by_policy", [PauseKind.PERSON, PauseKind.RETRY_LIMIT], id="person+policy"),
    pytest.param(PauseKind.KILL_SWITCH, "pause", [PauseKind.KILL_SWITCH, PauseKind.PERSON], id="switch+person"),
    pytest.param(PauseKind.PERSON, "pause", "INVALID_TRANSITION", id="person+person"),
    pytest.param(PauseKind.RETRY_LIMIT, "pause_by_policy", [PauseKind.RETRY_LIMIT], id="same-cause-twice"),
]


@pytest.mark.parametrize(("held_by", "verb", "expected"), LAYER_STACKING)
def test_a_new_cause_on_a_paused_plan_adds_a_layer(world, held_by, verb, expected):
    # given
    plan = make_plan(account=world.account, status=S.PAUSED, created_by="system:tests",
                     paused_at=timezone.now(), stop_reason_code=f"{held_by}_REASON")
    _hold(plan, held_by, scope="step-1" if held_by == PauseKind.RETRY_LIMIT else "")
    before = _plan_row(plan.id)

    # when
    if isinstance(expected, str):
        with pytest.raises(Conflict) as refused:
            VERBS[verb](plan.id, world.admin)
    else:
        VERBS[verb](plan.id, world.admin)

    # then: the plan stays PAUSED, whatever its stop reason was
    after = _plan_row(plan.id)
    entries = list(PlanLedgerEntry.objects.filter(plan_id=plan.id).values_list("event_type", flat=True))
    assert (after["plan_status"], after["stop_reason_code"]) == (S.PAUSED, before["stop_reason_code"])
    if isinstance(expected, str):
        assert refused.value.code == expected
        assert (after, entries, _open_kinds(plan.id)) == (before, [], [held_by])
    elif len(expected) == 1:  # the same cause: nothing new
        assert (after, entries, _open_kinds(plan.id)) == (before, [], expected)
    else:
        assert _open_kinds(plan.id) == expected
        assert entries == [EventType.PAUSE_LAYER_ADDED]
        assert after["version"] == before["version"] + 1


# --- steps (DESIGN §3.3) -------------------------------------------------------------------------

T = StepStatus
OPTIONAL, REQUIRED = "ESCALATE_SUPPORT_RISK", "PREP_RENEWAL_BRIEF"

# Written by hand from DESIGN §3.3 and what the engine and the services did before the table;
# deliberately not derived from plans.lifecycle: move -> (from step statuses, to, in plan statuses).
EXPECTED_STEP_MOVES: dict[StepMove, tuple[set, StepStatus, set]] = {
    StepMove.AWAIT_APPROVAL: ({T.PENDING}, T.PENDING_APPROVAL, {S.ACTIVE}),
    StepMove.APPROVE: ({T.PENDING_APPROVAL}, T.PENDING, {S.ACTIVE}),
    # an attempt's outcome is recorded whatever became of the plan while it ran
    StepMove.SUCCEED: ({T.PENDING}, T.DONE, set(PlanStatus)),
    StepMove.AUTO_SUCCEED: ({T.PENDING}, T.AUTO_EXECUTED, set(PlanStatus)),
    StepMove.FAIL: ({T.PENDING}, T.FAILED, set(PlanStatus)),
    StepMove.SKIP: ({T.PENDING, T.PENDING_APPROVAL, T.FAILED}, T.SKIPPED, {S.APPROVED, S.ACTIVE, S.PAUSED}),
    # a person starts a new series of attempts for a step that failed at its limit (DESIGN §3.3)
    StepMove.RETRY: ({T.FAILED}, T.PENDING, {S.ACTIVE, S.PAUSED}),
    # a FAILED step the revision changed starts a new series as its plan is approved (plan_approve, in DRAFT)
    StepMove.RESET: ({T.FAILED}, T.PENDING, {S.DRAFT}),
    # a finished plan closes what still waited (DESIGN §3.2)
    StepMove.CLOSE: ({T.PENDING, T.PENDING_APPROVAL}, T.SKIPPED, {S.COMPLETED, S.ABORTED, S.EXPIRED}),
}
EXPECTED_STEP_TRANSITIONS = frozenset({
    (T.PENDING, T.PENDING_APPROVAL), (T.PENDING_APPROVAL, T.PENDING), (T.PENDING, T.DONE),
    (T.PENDING, T.AUTO_EXECUTED), (T.PENDING, T.FAILED),
    (T.PENDING, T.SKIPPED), (T.PENDING_APPROVAL, T.SKIPPED), (T.FAILED, T.SKIPPED), (T.FAILED, T.PENDING),
})
# The code of the refusal when the plan allows the move but the step's status does not (the API's 409s).
EXPECTED_STEP_REFUSAL = {
    StepMove.APPROVE: "STEP_NOT_AWAITING_APPROVAL",
    StepMove.SKIP: "STEP_NOT_SKIPPABLE",
    StepMove.RETRY: "STEP_NOT_FAILED",
    StepMove.RESET: "STEP_NOT_FAILED",
}
# The columns a move needs besides the status: a closed required step is SKIPPED only as closed_with_plan
# (the database's required_step_skipped_only_with_its_plan).
STEP_MOVE_CHANGES = {StepMove.CLOSE: {"closed_with_plan": True}}


def _step_cases():
    for move in StepMove:
        for plan_status in PlanStatus:
            for step_status in StepStatus:
                yield pytest.param(move, plan_status, step_status, id=f"{move}:{plan_status}:{step_status}")


def _expected_step_outcome(move: StepMove, plan_status: PlanStatus, step_status: StepStatus, *, required: bool):
    """The target status, or the refusal code."""
    sources, target, plan_statuses = EXPECTED_STEP_MOVES[move]
    if plan_status not in plan_statuses:
        return "INVALID_TRANSITION"
    if move == StepMove.SKIP and required:
        return "REQUIRED_STEP"
    if step_status not in sources:
        return EXPECTED_STEP_REFUSAL.get(move, "INVALID_TRANSITION")
    return target


def _one_step_plan(world, plan_status: PlanStatus, step_status: StepStatus, *, action_type=OPTIONAL):
    plan = make_plan(account=world.account, status=plan_status, action_types=(action_type,), step_status=step_status)
    return plan, plan.steps.get()


def test_hand_written_step_table_is_the_lifecycle_table():
    assert set(StepMove) == set(EXPECTED_STEP_MOVES)
    assert set(lifecycle.STEP_MOVES) == set(StepMove)
    for move, (sources, target, plan_statuses) in EXPECTED_STEP_MOVES.items():
        rule = lifecycle.STEP_MOVES[move]
        assert (set(rule.sources), rule.target, set(rule.plan_statuses)) == (sources, target, plan_statuses), move
    assert lifecycle.ALLOWED_STEP_TRANSITIONS == EXPECTED_STEP_TRANSITIONS


@pytest.mark.parametrize(("move", "plan_status", "step_status"), list(_step_cases()))
def test_step_transition_makes_exactly_the_moves_of_the_table(world, move, plan_status, step_status):
    # given
    plan, step = _one_step_plan(world, plan_status, step_status)
    expected = _expected_step_outcome(move, plan_status, step_status, required=False)
    assert lifecycle.step_can_move(move, plan_status=plan_status, step_status=step_status) == (
        expected in StepStatus.values)

    # when
    with transaction.atomic():
        locked = lock_plan(plan.id)
        if expected in StepStatus.values:
            services.step_transition(step, move, plan=locked, changes=STEP_MOVE_CHANGES.get(move))
        else:
            with pytest.raises(Conflict) as refused:
                services.step_transition(step, move, plan=locked, changes=STEP_MOVE_CHANGES.get(move))

    # then
    step.refresh_from_db()
    if expected in StepStatus.values:
        assert step.status == expected
    else:
        assert refused.value.code == expected
        assert step.status == step_status


@pytest.mark.parametrize("move", list(StepMove))
def test_only_skip_refuses_a_required_step(world, move):
    sources, target, plan_statuses = EXPECTED_STEP_MOVES[move]
    plan, step = _one_step_plan(world, sorted(plan_statuses)[0], sorted(sources)[0], action_type=REQUIRED)
    assert step.required
    with transaction.atomic():
        locked = lock_plan(plan.id)
        if move == StepMove.SKIP:
            with pytest.raises(Conflict) as refused:
                services.step_transition(step, move, plan=locked)
            assert refused.value.code == "REQUIRED_STEP"
        else:
            services.step_transition(step, move, plan=locked, changes=STEP_MOVE_CHANGES.get(move))
    step.refresh_from_db()
    assert step.status == (sorted(sources)[0] if move == StepMove.SKIP else target)
    if move == StepMove.CLOSE:
        assert step.closed_with_plan  # the one way a required step ends SKIPPED


STEP_VERBS: dict[StepMove, Callable] = {
    StepMove.APPROVE: lambda plan, step, user: services.step_approve(plan_id=plan.id, step_id=step.step_id, user=user),
    StepMove.SKIP: lambda plan, step, user: services.step_skip(plan_id=plan.id, step_id=step.step_id, user=user,
                                                               reason="support is calm"),
}
STEP_VERB_EVENTS = {StepMove.APPROVE: EventType.STEP_APPROVED, StepMove.SKIP: EventType.STEP_SKIPPED}


def _people_step_cases():
    for move in STEP_VERBS:
        for plan_status in PlanStatus:
            for step_status in StepStatus:
                for action_type in (OPTIONAL, REQUIRED):
                    if action_type == REQUIRED and step_status == T.SKIPPED:
                        continue  # a state the database refuses (required_step_skipped_only_with_its_plan)
                    yield pytest.param(move, plan_status, step_status, action_type,
                                       id=f"{move}:{plan_status}:{step_status}:{action_type}")


@pytest.mark.parametrize(("move", "plan_status", "step_status", "action_type"), list(_people_step_cases()))
def test_people_step_verbs_follow_the_table_and_ledger_each_accepted_move(world, move, plan_status, step_status,
                                                                         action_type):
    # given
    plan, step = _one_step_plan(world, plan_status, step_status, action_type=action_type)
    expected = _expected_step_outcome(move, plan_status, step_status, required=step.required)
    plan_before, steps_before = _plan_row(plan.id), _step_rows(plan.id)

    # when
    if expected in StepStatus.values:
        STEP_VERBS[move](plan, step, world.admin)
    else:
        with pytest.raises(Conflict) as refused:
            STEP_VERBS[move](plan, step, world.admin)

    # then
    entries = list(PlanLedgerEntry.objects.filter(plan_id=plan.id))
    if expected in StepStatus.values:
        step.refresh_from_db()
        assert step.status == expected
        assert _plan_row(plan.id)["version"] == plan_before["version"] + 1
        assert [(entry.event_type, entry.step_id) for entry in entries] == [(STEP_VERB_EVENTS[move], step.step_id)]
    else:
        assert refused.value.code == expected
        assert (_plan_row(plan.id), _step_rows(plan.id), entries) == (plan_before, steps_before, [])
