"""Approvals bound to what was approved (DESIGN §3.3): what an approval records, what voids it, who may
not approve (the creator, anyone who edited since), and a FAILED step the revision changed."""
import hashlib
import json
import uuid
from datetime import timedelta

import pytest

from orchestrator import engine
from orchestrator.execution.models import ActionIntent
from plans import services
from plans.authority import CREATOR_CANNOT_APPROVE, EDITED_SINCE_APPROVAL, NOT_ALLOWED, Subject, Verb, denial
from plans.errors import NotAllowed
from plans.models import EventType, PlanLedgerEntry, PlanStatus, PlanStep, RevenuePlan, Role, StepStatus
from plans.schemas import PlanDraftInput, StepInput
from plans.services import approvals

MEETING, BRIEF, ESCALATE = "REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK"


def propose(world, *steps: StepInput, actor=None) -> RevenuePlan:
    return services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=PlanDraftInput(steps=list(steps)), actor=actor or world.seller)


def step(action_type: str, *, step_id=None, parameters=None, depends_on=()) -> StepInput:
    return StepInput(step_id=step_id or uuid.uuid4(), action_type=action_type, parameters=parameters or {},
                     depends_on=list(depends_on))


def current_inputs(plan: RevenuePlan, **changes) -> list[StepInput]:
    """The plan's steps as a person would send them back, with `changes` by step_id: {field: value}."""
    return [StepInput(step_id=row.step_id, action_type=row.action_type, depends_on=row.depends_on,
                      parameters=row.parameters).model_copy(update=changes.get(str(row.step_id), {}))
            for row in plan.steps.order_by("sequence")]


def state_of(plan: RevenuePlan) -> tuple:
    return (RevenuePlan.objects.filter(pk=plan.pk).values().get(),
            list(PlanStep.objects.filter(plan=plan).order_by("sequence").values()),
            PlanLedgerEntry.objects.filter(plan=plan).count())


def entries(plan: RevenuePlan, event_type: str) -> list[PlanLedgerEntry]:
    return list(PlanLedgerEntry.objects.filter(plan=plan, event_type=event_type).order_by("chain_seq"))


# --- what is hashed (helper A's data migration inlines exactly this) ------------------------------


def test_the_digest_is_sha256_of_compact_sorted_json():
    content = {"b": [2, 1], "a": {"y": "é", "x": None}}
    expected = hashlib.sha256(b'{"a":{"x":null,"y":"\\u00e9"},"b":[2,1]}').hexdigest()
    assert approvals.digest(content) == expected
    assert approvals.digest(content) == hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_the_content_covers_type_objective_constraints_and_each_step(world):
    first, second = uuid.uuid4(), uuid.uuid4()
    plan = propose(world, step(MEETING, step_id=first, parameters={"subject": "Renewal"}),
                   step(BRIEF, step_id=second, depends_on=[first]))
    steps = list(plan.steps.all())
    assert approvals.plan_content(plan, steps) == {
        "plan_type": "RENEWAL_DEFENSE",
        "objective": plan.objective,
        "constraints": {"no_external_contact_without_approval": True},
        "steps": [
            {"step_id": str(first), "action_type": MEETING, "parameters": {"subject": "Renewal"}, "depends_on": []},
            {"step_id": str(second), "action_type": BRIEF, "parameters": {}, "depends_on": [str(first)]},
        ],
    }
    assert approvals.step_content(plan.steps.get(pk=second)) == {
        "action_type": BRIEF, "parameters": {}, "depends_on": [str(first)], "risk_level": "LOW"}
    assert approvals.approval_facts(plan) == {
        "owner_id": world.seller.pk, "renewal_date": world.account.renewal_date.isoformat(),
        "risk_level": "MEDIUM", "plan_type_version": 1}


def test_approving_records_the_digest_the_content_and_the_facts(world):
    plan = propose(world, step(MEETING), step(BRIEF))
    services.plan_approve(plan_id=plan.id, user=world.approver)
    plan.refresh_from_db()
    steps = list(plan.steps.all())
    record = plan.approval_record
    assert record["digest"] == approvals.digest(approvals.plan_content(plan, steps))
    assert record["content"] == approvals.plan_content(plan, steps)
    assert record["facts"] == {"owner_id": world.seller.pk, "renewal_date": world.account.renewal_date.isoformat(),
                               "risk_level": "MEDIUM", "plan_type_version": 1}
    assert (record["approved_by"], record["approved_at"]) == (world.approver.pk, record["approved_at"])
    assert plan.edited_by_since_approval == []
    assert approvals.plan_approval(plan, steps)["state"] == approvals.CURRENT


# --- a step's approval is voided by a change of its content, and only then --------------------------


def _active_with_approved_steps(world, *inputs: StepInput) -> RevenuePlan:
    """Approved, activated; every step waits for a person and the owner approves each (none has run)."""
    plan = propose(world, *inputs)
    services.plan_approve(plan_id=plan.id, user=world.approver)
    assert engine.advance_plan(plan.id) == []  # every step waits for a person (mode APPROVAL_REQUIRED)
    for row in plan.steps.all():
        assert row.status == StepStatus.PENDING_APPROVAL
        services.step_approve(plan_id=plan.id, step_id=row.step_id, user=world.seller)
    return plan


def test_a_changed_step_waits_for_a_person_again_and_an_unchanged_one_runs_on_its_approval(world):
    # given: two approved steps, neither run yet
    meeting_id, brief_id = uuid.uuid4(), uuid.uuid4()
    plan = _active_with_approved_steps(world, step(MEETING, step_id=meeting_id, parameters={"subject": "Renewal"}),
                                       step(BRIEF, step_id=brief_id))
    meeting = PlanStep.objects.get(pk=meeting_id)
    assert meeting.approval_record["digest"] == approvals.digest(approvals.step_content(meeting))

    # when: revised, the meeting's parameters changed, the plan approved again by another approver
    services.plan_revise(plan_id=plan.id, user=world.seller, reason="new subject")
    services.plan_edit(plan_id=plan.id, user=world.seller, draft=PlanDraftInput(steps=current_inputs(
        plan, **{str(meeting_id): {"parameters": {"subject": "Renewal, with the new sponsor"}}})))
    services.plan_approve(plan_id=plan.id, user=world.approver)
    keys = engine.advance_plan(plan.id)

    # then: the meeting's approval is void, in the ledger field by field
    meeting.refresh_from_db()
    assert (meeting.status, meeting.approved_at, meeting.approved_by_id) == (StepStatus.PENDING_APPROVAL, None, None)
    change = {"field": "parameters", "before": {"subject": "Renewal"},
              "after": {"subject": "Renewal, with the new sponsor"}}
    assert meeting.approval_record == {"voided": [change], "approved_by": world.seller.pk,
                                       "approved_at": meeting.approval_record["approved_at"]}
    (voided,) = [entry for entry in entries(plan, EventType.APPROVAL_VOIDED) if entry.step_id == meeting_id]
    assert (voided.reason_code, voided.data["changes"]) == ("CONTENT_CHANGED", [change])
    assert voided.explanation == f"The {MEETING} step's approval was voided: parameters changed."
    # it waits for a person again, and says why
    waiting = entries(plan, EventType.STEP_AWAITING_APPROVAL)[-1]
    assert waiting.step_id == meeting_id
    assert waiting.explanation.endswith("Its approval was voided: parameters changed.")
    assert waiting.data["autonomy_decision"]["facts"]["approval_voided"] == "parameters changed"
    # nothing runs on the old approval
    assert not ActionIntent.objects.filter(plan=plan, step_id=meeting_id).exists()
    assert approvals.step_approval(meeting)["state"] == approvals.VOID
    # the unchanged brief kept its approval and runs on it
    brief = PlanStep.objects.get(pk=brief_id)
    assert brief.approved_by_id == world.seller.pk
    assert [key.step_id for key in keys] == [brief_id]
    intent = ActionIntent.objects.get(plan=plan, step_id=brief_id)
    assert (intent.approved_by_id, intent.approving_policy) == (world.seller.pk, "")
    assert approvals.step_approval(brief)["state"] == approvals.CURRENT
    assert not [entry for entry in entries(plan, EventType.APPROVAL_VOIDED) if entry.step_id == brief_id]


def test_a_step_whose_action_type_changed_waits_for_a_person_again(world):
    # given: the brief approved, not run
    meeting_id, second_id = uuid.uuid4(), uuid.uuid4()
    plan = _active_with_approved_steps(world, step(MEETING, step_id=meeting_id), step(BRIEF, step_id=second_id))

    # when: revised and the approved brief turned into an escalation (HIGH: a tenant admin approves the plan)
    services.plan_revise(plan_id=plan.id, user=world.seller)
    services.plan_edit(plan_id=plan.id, user=world.seller, draft=PlanDraftInput(steps=current_inputs(
        plan, **{str(second_id): {"action_type": ESCALATE}})))
    services.plan_approve(plan_id=plan.id, user=world.admin)
    engine.advance_plan(plan.id)

    # then
    second = PlanStep.objects.get(pk=second_id)
    assert (second.status, second.approved_at) == (StepStatus.PENDING_APPROVAL, None)
    assert [change["field"] for change in second.approval_record["voided"]] == ["action_type", "risk_level"]
    waiting = [entry for entry in entries(plan, EventType.STEP_AWAITING_APPROVAL) if entry.step_id == second_id][-1]
    assert waiting.reason_code == "RISK_LEVEL_HIGH"
    assert waiting.explanation.endswith("Its approval was voided: action_type and risk_level changed.")
    assert not ActionIntent.objects.filter(plan=plan, step_id=second_id).exists()


def test_an_edit_that_changes_no_step_keeps_every_step_approval(world):
    meeting_id, brief_id = uuid.uuid4(), uuid.uuid4()
    plan = _active_with_approved_steps(world, step(MEETING, step_id=meeting_id), step(BRIEF, step_id=brief_id))
    services.plan_revise(plan_id=plan.id, user=world.seller)

    services.plan_edit(plan_id=plan.id, user=world.seller,
                       draft=PlanDraftInput(objective="Keep the account", steps=current_inputs(plan)))

    assert all(row.approved_by_id == world.seller.pk for row in plan.steps.all())
    assert all(approvals.step_approval(row)["state"] == approvals.CURRENT for row in plan.steps.all())
    # the plan's own approval is void (revised and its objective changed), once, with the change
    plan.refresh_from_db()
    (voided,) = entries(plan, EventType.APPROVAL_VOIDED)
    assert (voided.step_id, [change["field"] for change in voided.data["changes"]]) == (None, ["objective"])
    approval = approvals.plan_approval(plan, list(plan.steps.all()))
    assert approval["state"] == approvals.VOID
    assert approval["changed_since"] == [{"field": "objective", "before": "Secure renewal before day -30",
                                          "after": "Keep the account"}]


# --- who may approve: not the creator, not an editor since the last approval -------------------------


# By hand, DESIGN §3.6 and §3.3: the roles that may approve, and the two people who may not.
#                       (role,              created it, edited it since approval) -> refusal code or None
APPROVE_MATRIX = [
    (Role.VIEWER, False, False, NOT_ALLOWED),
    (Role.SELLER, False, False, NOT_ALLOWED),
    (Role.SELLER, False, True, NOT_ALLOWED),
    (Role.PLAN_APPROVER, False, False, None),
    (Role.PLAN_APPROVER, True, False, CREATOR_CANNOT_APPROVE),
    (Role.PLAN_APPROVER, False, True, EDITED_SINCE_APPROVAL),
    (Role.TENANT_ADMIN, False, False, None),
    (Role.TENANT_ADMIN, True, False, CREATOR_CANNOT_APPROVE),
    (Role.TENANT_ADMIN, False, True, EDITED_SINCE_APPROVAL),
]


@pytest.mark.parametrize("verb", [Verb.APPROVE, Verb.REAPPROVE])
@pytest.mark.parametrize(("role", "created", "edited", "expected"), APPROVE_MATRIX)
def test_who_may_approve_and_reapprove(verb, role, created, edited, expected):
    subject = Subject(account_owner_id=7, plan_owner_id=7, plan_created_by="user:5" if created else "user:9",
                      plan_editors=frozenset({5, 11} if edited else {11}))
    reason = denial(verb, role=role, user_id=5, subject=subject)
    assert (reason.code if reason else None) == expected


def test_an_approver_who_edited_a_draft_cannot_approve_it_and_another_approver_can(world):
    # given: the seller's draft, edited by the plan approver
    plan = propose(world, step(MEETING), step(BRIEF))
    services.plan_edit(plan_id=plan.id, user=world.approver,
                       draft=PlanDraftInput(objective="Renew with the new sponsor", steps=current_inputs(plan)))
    plan.refresh_from_db()
    assert plan.edited_by_since_approval == [world.approver.pk]
    before = state_of(plan)

    # when the editor approves: refused, nothing changes
    with pytest.raises(NotAllowed) as refused:
        services.plan_approve(plan_id=plan.id, user=world.approver)
    assert refused.value.code == EDITED_SINCE_APPROVAL
    assert state_of(plan) == before

    # when another approver does: approved, and the list starts afresh
    services.plan_approve(plan_id=plan.id, user=world.admin)
    plan.refresh_from_db()
    assert (plan.plan_status, plan.approved_by_id, plan.edited_by_since_approval) == (
        PlanStatus.APPROVED, world.admin.pk, [])


# --- a FAILED step the revision changed starts a new series at approval -------------------------------


def test_approval_resets_a_failed_step_the_revision_changed_and_keeps_one_it_did_not(world):
    # given: an approved plan whose two steps failed at their limit (3 attempts each)
    meeting_id, brief_id = uuid.uuid4(), uuid.uuid4()
    plan = propose(world, step(MEETING, step_id=meeting_id, parameters={"subject": "Renewal"}),
                   step(BRIEF, step_id=brief_id))
    services.plan_approve(plan_id=plan.id, user=world.approver)
    PlanStep.objects.filter(plan=plan).update(status=StepStatus.FAILED, attempts=3, last_error="TIMEOUT: no answer")
    services.plan_revise(plan_id=plan.id, user=world.seller, reason="fix the subject")

    # when: only the meeting changes, and the plan is approved again
    services.plan_edit(plan_id=plan.id, user=world.seller, draft=PlanDraftInput(steps=current_inputs(
        plan, **{str(meeting_id): {"parameters": {"subject": "Renewal call"}}})))
    services.plan_approve(plan_id=plan.id, user=world.approver)

    # then: the changed meeting is PENDING for a new series; its attempt numbers keep counting
    meeting, brief = PlanStep.objects.get(pk=meeting_id), PlanStep.objects.get(pk=brief_id)
    assert (meeting.status, meeting.attempts, meeting.attempts_before_series, meeting.last_error) == (
        StepStatus.PENDING, 3, 3, "")
    (reset,) = entries(plan, EventType.STEP_RETRIED)
    assert (reset.step_id, reset.reason_code) == (meeting_id, "CONTENT_CHANGED")
    assert reset.data["changes"] == [{"field": "parameters", "before": {"subject": "Renewal"},
                                      "after": {"subject": "Renewal call"}}]
    # the unchanged brief is still FAILED: a person retries or skips it
    assert (brief.status, brief.attempts_before_series) == (StepStatus.FAILED, 0)
    # and the reset came before the approval in the ledger
    events = list(PlanLedgerEntry.objects.filter(plan=plan).order_by("chain_seq")
                  .values_list("event_type", flat=True))
    assert events[-2:] == [EventType.STEP_RETRIED, EventType.PLAN_APPROVED]


def test_the_payload_state_of_a_never_approved_plan_and_step_is_none(world):
    plan = propose(world, step(BRIEF))
    assert approvals.plan_approval(plan, list(plan.steps.all())) is None
    assert approvals.step_approval(plan.steps.get()) is None


def test_a_plan_whose_facts_drifted_is_stale_with_the_drift(world):
    plan = propose(world, step(BRIEF))
    services.plan_approve(plan_id=plan.id, user=world.approver)
    old_date = world.account.renewal_date
    world.account.renewal_date = old_date + timedelta(days=14)
    world.account.save(update_fields=["renewal_date"])
    plan = RevenuePlan.objects.select_related("account").get(pk=plan.pk)
    approval = approvals.plan_approval(plan, list(plan.steps.all()))
    assert approval["state"] == approvals.STALE
    assert approval["changed_since"] == [{"field": "renewal_date", "before": old_date.isoformat(),
                                          "after": world.account.renewal_date.isoformat()}]
