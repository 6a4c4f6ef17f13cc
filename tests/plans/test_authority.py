"""Who may do what (DESIGN §3.6), through the services: the role x verb matrix, creator and risk
rules, tenant isolation, and the ownership change."""
from dataclasses import dataclass, field

import pytest
from django.utils import timezone

from plans import ledger, services
from plans.errors import Conflict, NotAllowed, NotFound, PolicyRefused, ValidationFailed
from plans.models import (
    Account,
    EventType,
    KillSwitch,
    PauseKind,
    PauseLayer,
    PlanLedgerEntry,
    PlanStatus,
    PlanStep,
    RevenuePlan,
    RiskLevel,
    Role,
    StepStatus,
)
from plans.proposals import renewal_defense_draft
from plans.schemas import PlanDraftInput, StepInput
from tests.factories import MembershipFactory, UserFactory, make_plan

WITH_ESCALATION = ("REQUEST_RENEWAL_MEETING", "PREP_RENEWAL_BRIEF", "ESCALATE_SUPPORT_RISK")

# The callers of the matrix. OWNER is the SELLER who owns the account and its plans;
# SELLER is another seller of the same tenant who owns neither.
VIEWER, OWNER, SELLER, APPROVER, ADMIN = "viewer", "owner", "other_seller", "approver", "admin"
CALLERS = (VIEWER, OWNER, SELLER, APPROVER, ADMIN)
Y, N = True, False

# DESIGN §3.6 by hand. account_transfer has no row in the design's table; the code gives the
# decision to approvers, so an owner cannot hand an account (and its plans) to someone else.
#                    VIEWER  OWNER  SELLER  APPROVER  ADMIN
AUTHORITY_TABLE = {
    "propose":         (N,    Y,     N,       Y,       Y),
    "edit":            (N,    Y,     N,       Y,       Y),
    "approve":         (N,    N,     N,       Y,       Y),
    "approve_step":    (N,    Y,     N,       Y,       Y),
    "pause":           (N,    Y,     N,       Y,       Y),
    "resume":          (N,    Y,     N,       Y,       Y),
    "revise":          (N,    Y,     N,       Y,       Y),
    "skip_step":       (N,    Y,     N,       Y,       Y),
    "retry_step":      (N,    Y,     N,       Y,       Y),
    "abort":           (N,    Y,     N,       Y,       Y),
    "account_transfer": (N,   N,     N,       Y,       Y),
    "kill_switch_set": (N,    N,     N,       N,       Y),
}


@dataclass
class Case:
    """One verb aimed at one world: the plan it acts on and what the call needs."""

    plan: RevenuePlan | None = None
    step_id: object = None
    extra: dict = field(default_factory=dict)


# --- arranging and calling each verb -----------------------------------------------------------


def _arrange(verb: str, world) -> Case:
    account = world.account
    if verb == "propose":
        return Case()
    if verb in ("edit", "approve"):
        return Case(plan=make_plan(account=account, status=PlanStatus.DRAFT, created_by="system:tests"))
    if verb == "approve_step":
        plan = make_plan(account=account, status=PlanStatus.ACTIVE)
        step = plan.steps.get(sequence=0)
        PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.PENDING_APPROVAL)
        return Case(plan=plan, step_id=step.step_id)
    if verb == "resume":
        plan = make_plan(account=account, status=PlanStatus.PAUSED, paused_at=timezone.now(),
                         stop_reason_code="PAUSED_BY_USER")
        PauseLayer.objects.create(plan=plan, kind=PauseKind.PERSON, reason_code="PAUSED_BY_USER",
                                  explanation="Paused by a person.", set_by="user:0", set_at=timezone.now())
        return Case(plan=plan)
    if verb == "skip_step":
        plan = make_plan(account=account, status=PlanStatus.ACTIVE, action_types=WITH_ESCALATION)
        return Case(plan=plan, step_id=plan.steps.get(action_type="ESCALATE_SUPPORT_RISK").step_id)
    if verb == "retry_step":
        # PAUSED at the retry limit: the step FAILED, its layer holds the plan
        plan = make_plan(account=account, status=PlanStatus.PAUSED, paused_at=timezone.now(),
                         stop_reason_code="RETRY_LIMIT_EXCEEDED")
        step = plan.steps.get(sequence=0)
        PlanStep.objects.filter(pk=step.pk).update(status=StepStatus.FAILED, attempts=3, last_error="TRANSIENT: 503")
        PauseLayer.objects.create(plan=plan, kind=PauseKind.RETRY_LIMIT, scope=str(step.step_id),
                                  reason_code="RETRY_LIMIT_EXCEEDED", explanation="The step failed 3 times.",
                                  set_by="system:orchestrator", set_at=timezone.now())
        return Case(plan=plan, step_id=step.step_id)
    if verb == "account_transfer":
        heir = UserFactory()
        MembershipFactory(user=heir, tenant=world.tenant, role=Role.SELLER)
        return Case(plan=make_plan(account=account, status=PlanStatus.ACTIVE), extra={"heir": heir})
    if verb == "kill_switch_set":
        return Case(plan=make_plan(account=account, status=PlanStatus.ACTIVE))
    # pause, revise, abort
    return Case(plan=make_plan(account=account, status=PlanStatus.ACTIVE))


def _call(verb: str, world, user, case: Case):
    plan_id = case.plan.id if case.plan else None
    if verb == "propose":
        return services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                     draft=renewal_defense_draft(signal_types=set()), actor=user)
    if verb == "edit":
        steps = [StepInput(step_id=step.step_id, action_type=step.action_type) for step in case.plan.steps.all()]
        draft = PlanDraftInput(objective="Secure the renewal with the new sponsor", steps=steps)
        return services.plan_edit(plan_id=plan_id, user=user, draft=draft)
    if verb == "approve":
        return services.plan_approve(plan_id=plan_id, user=user)
    if verb == "approve_step":
        return services.step_approve(plan_id=plan_id, step_id=case.step_id, user=user)
    if verb == "pause":
        return services.plan_pause(plan_id=plan_id, user=user, reason="customer on holiday")
    if verb == "resume":
        return services.plan_resume(plan_id=plan_id, user=user)
    if verb == "revise":
        return services.plan_revise(plan_id=plan_id, user=user, reason="add a step")
    if verb == "skip_step":
        return services.step_skip(plan_id=plan_id, step_id=case.step_id, user=user, reason="no support issues")
    if verb == "retry_step":
        return services.step_retry(plan_id=plan_id, step_id=case.step_id, user=user, reason="the CRM is back")
    if verb == "abort":
        return services.plan_abort(plan_id=plan_id, user=user, reason="deal lost")
    if verb == "account_transfer":
        return services.account_transfer(account_id=world.account.id, new_owner_id=case.extra["heir"].pk, user=user,
                                         reason="tests: a new owner")
    if verb == "kill_switch_set":
        return services.kill_switch_set(tenant_id=world.tenant.id, user=user, engaged=True, reason="incident")
    raise AssertionError(f"no call for {verb}")


def _new_events(world, ledger_ids_before: set) -> list[tuple]:
    entries = PlanLedgerEntry.objects.filter(tenant=world.tenant).exclude(id__in=ledger_ids_before).order_by("id")
    return [(entry.plan_id, entry.event_type) for entry in entries]


def _assert_done(verb: str, world, user, case: Case, new_events: list[tuple]) -> None:
    """What an accepted call must have changed."""
    plan = RevenuePlan.objects.get(pk=case.plan.id) if case.plan else None
    if verb == "propose":
        proposed = RevenuePlan.objects.get(account=world.account)
        assert proposed.plan_status == PlanStatus.DRAFT
        assert proposed.created_by == f"user:{user.pk}"
        assert new_events == [(proposed.id, EventType.PLAN_CREATED)]
    elif verb == "edit":
        assert plan.objective == "Secure the renewal with the new sponsor"
        assert new_events == [(plan.id, EventType.PLAN_EDITED)]
    elif verb == "approve_step":
        step = PlanStep.objects.get(pk=case.step_id)
        assert (step.status, step.approved_by_id) == (StepStatus.PENDING, user.pk)
        assert new_events == [(plan.id, EventType.STEP_APPROVED)]
    elif verb == "retry_step":
        step = PlanStep.objects.get(pk=case.step_id)
        assert (step.status, step.attempts, step.attempts_before_series) == (StepStatus.PENDING, 3, 3)
        assert plan.plan_status == PlanStatus.ACTIVE
        assert new_events == [(plan.id, EventType.STEP_RETRIED), (plan.id, EventType.PAUSE_LAYER_LIFTED),
                              (plan.id, EventType.PLAN_RESUMED)]
    elif verb == "skip_step":
        assert PlanStep.objects.get(pk=case.step_id).status == StepStatus.SKIPPED
        assert new_events == [(plan.id, EventType.STEP_SKIPPED)]
    elif verb == "account_transfer":
        assert Account.objects.get(pk=world.account.pk).owner_id == case.extra["heir"].pk
        assert plan.owner_id == case.extra["heir"].pk
        # the owner is one of the approval's facts: the running plan waits for a reapproval
        assert new_events == [(plan.id, EventType.PLAN_OWNER_CHANGED), (plan.id, EventType.PLAN_PAUSED),
                              (plan.id, EventType.PAUSE_LAYER_ADDED), (None, EventType.ACCOUNT_OWNER_CHANGED)]
    elif verb == "kill_switch_set":
        assert KillSwitch.objects.get(tenant=world.tenant, action_type="").engaged is True
        assert new_events == [(None, EventType.KILL_SWITCH_FLIPPED)]
    else:
        # the move's entry with the layer it adds or lifts, and the waiting steps an abort closes
        status_and_events = {
            "approve": (PlanStatus.APPROVED, [EventType.PLAN_APPROVED]),
            "pause": (PlanStatus.PAUSED, [EventType.PLAN_PAUSED, EventType.PAUSE_LAYER_ADDED]),
            "resume": (PlanStatus.ACTIVE, [EventType.PAUSE_LAYER_LIFTED, EventType.PLAN_RESUMED]),
            "revise": (PlanStatus.DRAFT, [EventType.PLAN_REVISED]),
            "abort": (PlanStatus.ABORTED, [EventType.PLAN_ABORTED, EventType.STEP_CLOSED, EventType.STEP_CLOSED]),
        }[verb]
        assert plan.plan_status == status_and_events[0]
        assert new_events == [(plan.id, event) for event in status_and_events[1]]
    if verb != "propose":
        assert not RevenuePlan.objects.filter(account=world.account).exclude(pk=case.plan.pk).exists()


def _tenant_state(world) -> dict:
    """Every row a verb could touch, to show that a refusal changed nothing."""
    return {
        "plans": list(RevenuePlan.objects.filter(tenant=world.tenant).order_by("id").values()),
        "steps": list(PlanStep.objects.filter(plan__tenant=world.tenant).order_by("step_id").values()),
        "accounts": list(Account.objects.filter(tenant=world.tenant).order_by("id").values()),
        "kill_switches": list(KillSwitch.objects.filter(tenant=world.tenant).values()),
        "pause_layers": list(PauseLayer.objects.filter(plan__tenant=world.tenant).order_by("id").values()),
        "ledger_count": PlanLedgerEntry.objects.filter(tenant=world.tenant).count(),
    }


def _caller(world, who: str):
    if who == SELLER:
        other_seller = UserFactory()
        MembershipFactory(user=other_seller, tenant=world.tenant, role=Role.SELLER)
        return other_seller
    return {VIEWER: world.viewer, OWNER: world.seller, APPROVER: world.approver, ADMIN: world.admin}[who]


def _matrix():
    for verb, row in AUTHORITY_TABLE.items():
        for who, allowed in zip(CALLERS, row, strict=True):
            yield pytest.param(verb, who, allowed, id=f"{verb}-{who}-{'allowed' if allowed else 'refused'}")


# --- the matrix --------------------------------------------------------------------------------


def test_table_covers_every_verb_and_caller():
    assert len(AUTHORITY_TABLE) == 12
    assert all(len(row) == len(CALLERS) for row in AUTHORITY_TABLE.values())


@pytest.mark.parametrize(("verb", "who", "allowed"), list(_matrix()))
def test_role_verb_matrix(world, verb, who, allowed):
    # given
    assert world.account.owner_id == world.seller.pk
    user = _caller(world, who)
    case = _arrange(verb, world)
    state_before = _tenant_state(world)
    ledger_ids_before = set(PlanLedgerEntry.objects.filter(tenant=world.tenant).values_list("id", flat=True))

    if allowed:
        # when
        _call(verb, world, user, case)
        # then
        _assert_done(verb, world, user, case, _new_events(world, ledger_ids_before))
    else:
        # when
        with pytest.raises(NotAllowed) as refused:
            _call(verb, world, user, case)
        # then
        assert refused.value.code == "NOT_ALLOWED"
        assert _tenant_state(world) == state_before


@pytest.mark.parametrize("verb", list(AUTHORITY_TABLE))
@pytest.mark.parametrize("role", list(Role))
def test_member_of_another_tenant_gets_not_found(world, other_world, verb, role):
    # given: a member of another tenant, whatever their role there
    outsider = other_world.users[role]
    case = _arrange(verb, world)
    state_before = _tenant_state(world)

    # when
    with pytest.raises(NotFound):
        _call(verb, world, outsider, case)

    # then
    assert _tenant_state(world) == state_before


# --- approval rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("creator_role", [Role.PLAN_APPROVER, Role.TENANT_ADMIN])
def test_creator_may_not_approve_their_own_plan(world, creator_role):
    # given: an approver proposed the plan
    creator = world.users[creator_role]
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=renewal_defense_draft(signal_types=set()), actor=creator)
    state_before = _tenant_state(world)

    # when
    with pytest.raises(NotAllowed) as refused:
        services.plan_approve(plan_id=plan.id, user=creator)

    # then
    assert refused.value.code == "CREATOR_CANNOT_APPROVE"
    assert _tenant_state(world) == state_before
    assert RevenuePlan.objects.get(pk=plan.id).plan_status == PlanStatus.DRAFT

    # and another approver may
    other_approver = world.admin if creator_role == Role.PLAN_APPROVER else world.approver
    services.plan_approve(plan_id=plan.id, user=other_approver)
    assert RevenuePlan.objects.get(pk=plan.id).plan_status == PlanStatus.APPROVED


def _high_risk_draft(world) -> RevenuePlan:
    plan = services.plan_propose(account_id=world.account.id, plan_type="RENEWAL_DEFENSE",
                                 draft=renewal_defense_draft(signal_types={"SUPPORT_RISK"}), actor=world.seller)
    assert list(plan.steps.values_list("action_type", flat=True)) == list(WITH_ESCALATION)
    assert plan.risk_level == RiskLevel.HIGH
    return plan


def test_high_risk_plan_is_refused_to_a_plan_approver(world):
    # given
    plan = _high_risk_draft(world)
    plan_before = RevenuePlan.objects.filter(pk=plan.id).values().get()
    ledger_ids_before = set(PlanLedgerEntry.objects.filter(tenant=world.tenant).values_list("id", flat=True))

    # when
    with pytest.raises(PolicyRefused) as refused:
        services.plan_approve(plan_id=plan.id, user=world.approver)

    # then: the refusal itself is the only thing written
    assert "RISK_REQUIRES_ELEVATED_AUTHORITY" in [reason.code for reason in refused.value.reasons]
    assert RevenuePlan.objects.filter(pk=plan.id).values().get() == plan_before
    assert _new_events(world, ledger_ids_before) == [(plan.id, EventType.POLICY_REJECTED)]
    rejection = PlanLedgerEntry.objects.get(plan=plan, event_type=EventType.POLICY_REJECTED)
    assert rejection.actor == f"user:{world.approver.pk}"
    assert "RISK_REQUIRES_ELEVATED_AUTHORITY" in [reason["code"] for reason in rejection.data["reasons"]]


def test_high_risk_plan_may_be_approved_by_a_tenant_admin(world):
    # given
    plan = _high_risk_draft(world)

    # when
    services.plan_approve(plan_id=plan.id, user=world.admin)

    # then
    plan.refresh_from_db()
    assert (plan.plan_status, plan.approved_by_id) == (PlanStatus.APPROVED, world.admin.pk)
    assert PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.PLAN_APPROVED).count() == 1
    assert not PlanLedgerEntry.objects.filter(plan=plan, event_type=EventType.POLICY_REJECTED).exists()


# --- ownership change --------------------------------------------------------------------------


@pytest.fixture
def account_with_plans(world):
    """One plan of the seller's account in every status, and a second seller to hand it to."""
    heir = UserFactory()
    MembershipFactory(user=heir, tenant=world.tenant, role=Role.SELLER)
    plans = {status: make_plan(account=world.account, status=status) for status in PlanStatus}
    return heir, plans


def test_account_transfer_moves_open_plans_and_holds_the_running_ones_for_reapproval(world, account_with_plans):
    # given
    heir, plans = account_with_plans
    old_owner = world.seller
    rows_before = {status: RevenuePlan.objects.filter(pk=plan.id).values().get() for status, plan in plans.items()}
    ledger_ids_before = set(PlanLedgerEntry.objects.filter(tenant=world.tenant).values_list("id", flat=True))

    # when
    services.account_transfer(account_id=world.account.id, new_owner_id=heir.pk, user=world.approver,
                              reason="tests: a new owner")

    # then: the account has its new owner
    assert Account.objects.get(pk=world.account.pk).owner_id == heir.pk
    rows_after = {status: RevenuePlan.objects.filter(pk=plan.id).values().get() for status, plan in plans.items()}

    # the ACTIVE plan is paused until an approver reapproves it (DESIGN §3.6: the owner is an approval fact)
    active = rows_after[PlanStatus.ACTIVE]
    assert (active["plan_status"], active["stop_reason_code"], active["owner_id"]) == (
        PlanStatus.PAUSED, "OWNERSHIP_CHANGED", heir.pk
    )
    assert active["paused_at"] is not None
    assert active["version"] == rows_before[PlanStatus.ACTIVE]["version"] + 1

    # the other open plans keep their status and just change hands; the PAUSED one is held for reapproval too
    for status in (PlanStatus.DRAFT, PlanStatus.APPROVED, PlanStatus.PAUSED):
        before, after = rows_before[status], rows_after[status]
        assert (after["plan_status"], after["owner_id"]) == (status, heir.pk)
        assert after["version"] == before["version"] + 1
        assert {key for key in after if after[key] != before[key]} == {"owner_id", "version", "updated_at"}

    # finished plans are history: untouched
    for status in (PlanStatus.COMPLETED, PlanStatus.ABORTED, PlanStatus.EXPIRED):
        assert rows_after[status] == rows_before[status]
        assert rows_after[status]["owner_id"] == old_owner.pk

    stale = {PlanStatus.ACTIVE, PlanStatus.PAUSED}
    for status, plan in plans.items():
        layers = list(PauseLayer.objects.filter(plan=plan, lifted_at__isnull=True).values_list("kind", "reason_code"))
        assert layers == ([(PauseKind.APPROVAL_STALE, "OWNERSHIP_CHANGED")] if status in stale else [])

    # the ledger says so: each open plan changed hands, the running ones are held, once in the tenant chain
    new_entries = list(PlanLedgerEntry.objects.filter(tenant=world.tenant).exclude(id__in=ledger_ids_before)
                       .order_by("id"))
    by_plan: dict = {}
    for entry in new_entries:
        if entry.plan_id:
            by_plan.setdefault(entry.plan_id, []).append(entry)
    assert set(by_plan) == {plans[status].id for status in (PlanStatus.DRAFT, PlanStatus.APPROVED,
                                                              PlanStatus.ACTIVE, PlanStatus.PAUSED)}
    expected_events = {
        PlanStatus.DRAFT: [EventType.PLAN_OWNER_CHANGED],
        PlanStatus.APPROVED: [EventType.PLAN_OWNER_CHANGED],
        PlanStatus.ACTIVE: [EventType.PLAN_OWNER_CHANGED, EventType.PLAN_PAUSED, EventType.PAUSE_LAYER_ADDED],
        PlanStatus.PAUSED: [EventType.PLAN_OWNER_CHANGED, EventType.PAUSE_LAYER_ADDED],
    }
    for status, events in expected_events.items():
        entries = by_plan[plans[status].id]
        assert [entry.event_type for entry in entries] == events
        assert (entries[0].data["old_owner_id"], entries[0].data["new_owner_id"]) == (old_owner.pk, heir.pk)
    assert by_plan[plans[PlanStatus.ACTIVE].id][1].reason_code == "OWNERSHIP_CHANGED"
    (tenant_entry,) = [entry for entry in new_entries if entry.plan_id is None]
    assert tenant_entry.event_type == EventType.ACCOUNT_OWNER_CHANGED
    assert tenant_entry.data["account_id"] == str(world.account.id)
    assert (tenant_entry.data["old_owner_id"], tenant_entry.data["new_owner_id"]) == (old_owner.pk, heir.pk)
    open_ids = {str(plans[status].id) for status in (PlanStatus.DRAFT, PlanStatus.APPROVED, PlanStatus.ACTIVE,
                                                     PlanStatus.PAUSED)}
    assert set(tenant_entry.data["plan_ids"]) == open_ids
    assert ledger.verify_ledger(tenant_id=world.tenant.id).ok


def test_after_a_transfer_a_resume_cannot_run_the_plan_and_a_reapproval_does(world, account_with_plans):
    # given: the ACTIVE plan was paused by the transfer (and no other plan of its type waits APPROVED:
    # a PAUSED plan may not run again while one does, DESIGN §3.5)
    heir, plans = account_with_plans
    paused_id = plans[PlanStatus.ACTIVE].id
    services.plan_abort(plan_id=plans[PlanStatus.APPROVED].id, user=world.admin, reason="superseded")
    services.account_transfer(account_id=world.account.id, new_owner_id=heir.pk, user=world.admin,
                              reason="tests: a new owner")
    state_before = _tenant_state(world)

    # when the old owner tries
    with pytest.raises(NotAllowed) as refused:
        services.plan_resume(plan_id=paused_id, user=world.seller)

    # then nothing changes
    assert refused.value.code == "NOT_ALLOWED"
    assert _tenant_state(world) == state_before

    # when the new owner tries: the stale approval is not theirs to lift
    with pytest.raises(Conflict) as refused:
        services.plan_resume(plan_id=paused_id, user=heir)
    assert refused.value.code == "PAUSE_LAYERS_REMAIN"
    assert [reason.code for reason in refused.value.reasons] == [PauseKind.APPROVAL_STALE]
    assert _tenant_state(world) == state_before

    # when an approver reapproves it on the new owner
    services.plan_reapprove(plan_id=paused_id, user=world.approver)

    # then the plan runs again, and the ledger says who reapproved it
    plan = RevenuePlan.objects.get(pk=paused_id)
    assert (plan.plan_status, plan.stop_reason_code) == (PlanStatus.ACTIVE, "")
    assert plan.approval_record["facts"]["owner_id"] == heir.pk
    events = list(PlanLedgerEntry.objects.filter(plan_id=paused_id).order_by("-chain_seq")[:3])
    assert [(entry.event_type, entry.actor) for entry in reversed(events)] == [
        (EventType.PLAN_REAPPROVED, f"user:{world.approver.pk}"),
        (EventType.PAUSE_LAYER_LIFTED, f"user:{world.approver.pk}"),
        (EventType.PLAN_RESUMED, f"user:{world.approver.pk}"),
    ]


def _viewer(world, other_world):
    return world.viewer


def _member_of_another_tenant(world, other_world):
    return other_world.seller


def _user_without_membership(world, other_world):
    return UserFactory()


def _inactive_seller(world, other_world):
    user = UserFactory()
    MembershipFactory(user=user, tenant=world.tenant, role=Role.SELLER, is_active=False)
    return user


@pytest.mark.parametrize(
    "make_new_owner", [_viewer, _member_of_another_tenant, _user_without_membership, _inactive_seller]
)
def test_account_transfer_to_someone_who_may_not_own_accounts_is_refused(world, other_world, account_with_plans,
                                                                         make_new_owner):
    # given
    new_owner = make_new_owner(world, other_world)
    state_before = _tenant_state(world)
    other_state_before = _tenant_state(other_world)

    # when
    with pytest.raises(ValidationFailed):
        services.account_transfer(account_id=world.account.id, new_owner_id=new_owner.pk, user=world.admin,
                                  reason="tests: a new owner")

    # then
    assert _tenant_state(world) == state_before
    assert _tenant_state(other_world) == other_state_before
    assert Account.objects.get(pk=world.account.pk).owner_id == world.seller.pk
