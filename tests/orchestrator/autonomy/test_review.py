"""The daily review: promotion proposed past the threshold and applied only on a tenant admin's confirmation;
demotion applied on incidents; every change ledgered with its evidence."""
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from orchestrator.autonomy import review
from orchestrator.autonomy import services as autonomy
from orchestrator.autonomy.models import ActionTypeAutonomy, AutonomyProposal, ShadowDecision
from orchestrator.execution.models import ActionIntent, IntentStatus
from plans import ledger, services
from plans.errors import Conflict, NotAllowed, NotFound
from plans.models import AccountSignal, EventType, PlanLedgerEntry, PlanStatus
from tests.factories import AccountFactory, make_plan
from tests.orchestrator.autonomy.test_shadow import in_shadow, waiting_plan
from tests.orchestrator.test_engine import BRIEF

pytestmark = pytest.mark.django_db
THRESHOLDS = {"REVPLAN_PROMOTION_DECISIONS": 5, "REVPLAN_PROMOTION_AGREEMENT": 0.8,
              "REVPLAN_DEMOTION_INCIDENTS": 2, "REVPLAN_DEMOTION_WINDOW_DAYS": 7, "REVPLAN_SHADOW_WINDOW_DAYS": 30}


def set_mode(world, mode):
    """The brief's mode, set up directly (no AUTONOMY_CHANGED entry of today): as if set before the decisions and
    incidents the tests seed in the past."""
    ActionTypeAutonomy.objects.update_or_create(tenant=world.tenant, action_type=BRIEF, defaults={"mode": mode})


def set_mode_audited(world, mode):
    """A tenant admin's change, through the service: ledgered now."""
    autonomy.action_type_autonomy_set(tenant_id=world.tenant.id, user=world.admin, action_type=BRIEF, mode=mode)


def running_on_its_own_for_a_while(world):
    set_mode(world, "AUTO_EXECUTE")


def shadow_rows(world, decisions, *, would_run=True, days_ago=1):
    plan = make_plan(account=world.account, status=PlanStatus.COMPLETED, action_types=(BRIEF,))
    at = timezone.now() - timedelta(days=days_ago)
    ShadowDecision.objects.bulk_create([ShadowDecision(
        tenant=world.tenant, plan=plan, step_id=uuid.uuid4(), attempt=1, account=world.account, action_type=BRIEF,
        would_run=would_run, reason="AUTONOMY_ALLOWED", explanation="-", policy_version="auto-approval-v1", facts={},
        content_digest="d", decided_at=at + timedelta(seconds=index), awaiting_seq=0, person_decision=decision,
        person_decided_at=at) for index, decision in enumerate(decisions)])


def autonomy_entries(world, reason_code):
    return list(PlanLedgerEntry.objects.filter(tenant_id=world.tenant.id, event_type=EventType.AUTONOMY_CHANGED,
                                               reason_code=reason_code))


def mode(world):
    return ActionTypeAutonomy.objects.get(tenant=world.tenant, action_type=BRIEF).mode


@override_settings(**THRESHOLDS)
@pytest.mark.parametrize(("decisions", "proposed"), [
    (["APPROVED"] * 4 + ["SKIPPED"], True),  # 4 of 5 = 80%: at the threshold
    (["APPROVED"] * 3 + ["SKIPPED", "APPROVED_AFTER_EDIT"], False),  # 60%
    (["APPROVED"] * 4, False),  # 100%, but of fewer than 5
])
def test_promotion_is_proposed_only_past_the_threshold_over_enough_decisions(world, decisions, proposed):
    set_mode(world, "SHADOW")
    shadow_rows(world, decisions)
    shadow_rows(world, ["APPROVED"] * 10, would_run=False)  # steps it would have asked about: no evidence
    result = review.review_tenant(world.tenant.id)
    assert (BRIEF in result.proposed) == proposed
    assert AutonomyProposal.objects.filter(tenant=world.tenant).exists() == proposed
    assert mode(world) == "SHADOW"  # never applied by the review itself
    entries = autonomy_entries(world, "PROMOTION_PROPOSED")
    assert len(entries) == (1 if proposed else 0)
    if proposed:
        evidence = entries[0].data["evidence"]
        assert (evidence["decisions"], evidence["agreed"], evidence["min_decisions"], evidence["min_agreement"],
                evidence["window_days"]) == (5, 4, 5, 0.8, 30)
        assert review.review_tenant(world.tenant.id).proposed == []  # one open proposal at a time


@override_settings(**THRESHOLDS)
def test_decisions_older_than_the_window_are_no_evidence(world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5, days_ago=31)
    assert review.review_tenant(world.tenant.id).proposed == []


@override_settings(**THRESHOLDS)
def test_a_confirmed_promotion_sets_auto_execute_with_its_evidence_in_the_ledger(world, other_world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5)
    review.review_tenant(world.tenant.id)
    proposal = AutonomyProposal.objects.get(tenant=world.tenant)
    # who may: not a seller, not another tenant's admin (it is not found for them)
    with pytest.raises(NotAllowed):
        review.proposal_decide(proposal_id=proposal.id, user=world.seller, confirm=True)
    with pytest.raises(NotFound):
        review.proposal_decide(proposal_id=proposal.id, user=other_world.admin, confirm=True)
    assert mode(world) == "SHADOW"
    review.proposal_decide(proposal_id=proposal.id, user=world.admin, confirm=True)
    assert mode(world) == "AUTO_EXECUTE"
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by) == ("CONFIRMED", ledger.user_actor(world.admin))
    [entry] = autonomy_entries(world, "PROMOTION_CONFIRMED")
    assert entry.data["after"]["mode"] == "AUTO_EXECUTE"
    assert entry.data["evidence"]["proposal_id"] == str(proposal.id)
    assert entry.data["evidence"]["agreed"] == 5
    with pytest.raises(Conflict):
        review.proposal_decide(proposal_id=proposal.id, user=world.admin, confirm=True)


@override_settings(**THRESHOLDS)
def test_a_proposal_for_a_mode_changed_since_is_refused_then_superseded(world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5)
    review.review_tenant(world.tenant.id)
    proposal = AutonomyProposal.objects.get(tenant=world.tenant)
    set_mode(world, "APPROVAL_REQUIRED")
    with pytest.raises(Conflict) as refused:
        review.proposal_decide(proposal_id=proposal.id, user=world.admin, confirm=True)
    assert refused.value.code == "PROPOSAL_SUPERSEDED"
    assert mode(world) == "APPROVAL_REQUIRED"
    assert review.review_tenant(world.tenant.id).superseded == [BRIEF]
    proposal.refresh_from_db()
    assert proposal.status == "SUPERSEDED"
    assert len(autonomy_entries(world, "PROMOTION_SUPERSEDED")) == 1


@override_settings(**THRESHOLDS)
def test_a_dismissed_proposal_changes_nothing_and_is_ledgered(world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5)
    review.review_tenant(world.tenant.id)
    proposal = AutonomyProposal.objects.get(tenant=world.tenant)
    review.proposal_decide(proposal_id=proposal.id, user=world.admin, confirm=False)
    assert mode(world) == "SHADOW"
    assert len(autonomy_entries(world, "PROMOTION_DISMISSED")) == 1


def autonomous_intent(world, *, finished_ago=timedelta(days=1), compensated=False):
    plan = make_plan(account=world.account, status=PlanStatus.COMPLETED, action_types=(BRIEF,))
    step = plan.steps.get()
    finished = timezone.now() - finished_ago
    return ActionIntent.objects.create(
        tenant=world.tenant, account=world.account, action_type=BRIEF, plan=plan, step_id=step.step_id, attempt=1,
        approving_policy="auto-approval-v1", expires_at=finished + timedelta(days=1), status=IntentStatus.SUCCEEDED,
        effect_key=f"plan:{plan.id}:step:{step.step_id}", connector="internal", started_at=finished,
        finished_at=finished,
        compensated_at=finished + timedelta(hours=1) if compensated else None)


@override_settings(**THRESHOLDS)
def test_demotion_to_shadow_is_automatic_when_incidents_reach_the_threshold(world):
    running_on_its_own_for_a_while(world)
    autonomous_intent(world, compensated=True)
    # one incident: below the threshold of 2
    assert review.review_tenant(world.tenant.id).demoted == []
    # a NEGATIVE_RESPONSE on the account after an autonomous step there: the second
    AccountSignal.objects.create(account=world.account, tenant=world.tenant, signal_type="NEGATIVE_RESPONSE",
                                 observed_at=timezone.now() - timedelta(hours=2))
    assert review.review_tenant(world.tenant.id).demoted == [BRIEF]
    assert mode(world) == "SHADOW"
    [entry] = autonomy_entries(world, "AUTONOMY_DEMOTED")
    assert entry.actor == review.ACTOR
    assert {key: entry.data["evidence"][key] for key in ("incidents", "compensations", "negative_responses",
                                                         "breaker_trips", "max_incidents", "window_days")} == {
        "incidents": 2, "compensations": 1, "negative_responses": 1, "breaker_trips": 0, "max_incidents": 2,
        "window_days": 7}


@override_settings(**THRESHOLDS)
def test_incidents_before_the_window_or_before_any_autonomous_step_do_not_demote(world):
    running_on_its_own_for_a_while(world)
    autonomous_intent(world, finished_ago=timedelta(days=10), compensated=True)
    # a negative response before the autonomous step on that account is not about it
    autonomous_intent(world, finished_ago=timedelta(hours=1))
    AccountSignal.objects.create(account=world.account, tenant=world.tenant, signal_type="NEGATIVE_RESPONSE",
                                 observed_at=timezone.now() - timedelta(hours=3))
    assert review.review_tenant(world.tenant.id).demoted == []
    assert mode(world) == "AUTO_EXECUTE"


def breaker_opened(world, *, from_state="CLOSED", connector="internal"):
    with transaction.atomic():
        ledger.breaker_opened(world.tenant.id, actor="system:breakers", connector=connector, from_state=from_state,
                              to_state="OPEN", reason_code="FAILURE_RATE", explanation="-", data={})


@override_settings(**THRESHOLDS)
def test_breaker_trips_count_once_an_outage_for_the_connectors_autonomous_runs_used(world):
    running_on_its_own_for_a_while(world)
    autonomous_intent(world)  # through the internal connector
    breaker_opened(world)
    breaker_opened(world, from_state="HALF_OPEN")  # the same outage: a failed probe
    breaker_opened(world, connector="crm")  # a connector no autonomous brief used
    assert review.review_tenant(world.tenant.id).demoted == []
    breaker_opened(world)  # a second outage
    assert review.review_tenant(world.tenant.id).demoted == [BRIEF]
    [entry] = autonomy_entries(world, "AUTONOMY_DEMOTED")
    assert (entry.data["evidence"]["breaker_trips"], entry.data["evidence"]["connectors"]) == (2, ["internal"])


@override_settings(**THRESHOLDS)
def test_incidents_before_the_last_promotion_were_weighed_already(world):
    running_on_its_own_for_a_while(world)
    autonomous_intent(world, compensated=True)
    autonomous_intent(world, compensated=True)
    assert review.review_tenant(world.tenant.id).demoted == [BRIEF]
    # promoted again by an admin: the same two incidents do not demote it a second time
    set_mode_audited(world, "AUTO_EXECUTE")
    assert review.review_tenant(world.tenant.id).demoted == []
    assert mode(world) == "AUTO_EXECUTE"


@override_settings(**THRESHOLDS)
def test_a_dismissed_proposal_comes_back_only_on_new_evidence(world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5, days_ago=2)
    review.review_tenant(world.tenant.id)
    proposal = AutonomyProposal.objects.get(tenant=world.tenant)
    review.proposal_decide(proposal_id=proposal.id, user=world.admin, confirm=False)
    assert review.review_tenant(world.tenant.id).proposed == []  # the same evidence
    shadow_rows(world, ["APPROVED"] * 5, days_ago=0)  # five more, decided after the dismissal
    assert review.review_tenant(world.tenant.id).proposed == [BRIEF]


@override_settings(**THRESHOLDS)
def test_confirming_weighs_the_evidence_again(world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5, days_ago=2)
    review.review_tenant(world.tenant.id)
    proposal = AutonomyProposal.objects.get(tenant=world.tenant)
    shadow_rows(world, ["SKIPPED"] * 3, days_ago=0)  # people disagreed since
    with pytest.raises(Conflict) as refused:
        review.proposal_decide(proposal_id=proposal.id, user=world.admin, confirm=True)
    assert refused.value.code == "PROPOSAL_NO_LONGER_EARNED"
    assert mode(world) == "SHADOW"
    assert review.review_tenant(world.tenant.id).superseded == [BRIEF]
    [entry] = autonomy_entries(world, "PROMOTION_SUPERSEDED")
    assert entry.data["evidence"]["reason"] == "EVIDENCE_CHANGED"


@override_settings(**THRESHOLDS)
def test_the_daily_run_closes_the_proposal_of_a_mode_set_back_to_approval_required(world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5)
    review.review_all_tenants()
    set_mode(world, "APPROVAL_REQUIRED")
    assert review.review_all_tenants()[str(world.tenant.id)].superseded == [BRIEF]
    assert AutonomyProposal.objects.get(tenant=world.tenant).status == "SUPERSEDED"


@override_settings(**THRESHOLDS)
def test_evidence_from_before_a_demotion_does_not_propose_the_promotion_again(world):
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 5)
    set_mode_audited(world, "AUTO_EXECUTE")
    set_mode_audited(world, "SHADOW")  # demoted (here by hand): back in shadow mode
    assert review.review_tenant(world.tenant.id).proposed == []


@override_settings(**THRESHOLDS)
def test_confirming_counts_what_people_decided_since_the_review(world):
    in_shadow(world, BRIEF)  # through the service: the decisions below come after it
    plans = [waiting_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller)) for _ in range(5)]
    for plan in plans:
        services.step_approve(plan_id=plan.id, step_id=plan.steps.get().step_id, user=world.seller)
    review.review_tenant(world.tenant.id)
    proposal = AutonomyProposal.objects.get(tenant=world.tenant)
    # after the review: two more steps judged, and people abort both plans (disagreeing with "would run")
    later = [waiting_plan(world, account=AccountFactory(tenant=world.tenant, owner=world.seller)) for _ in range(2)]
    for plan in later:
        services.plan_abort(plan_id=plan.id, user=world.seller, reason="not now")
    with pytest.raises(Conflict) as refused:
        review.proposal_decide(proposal_id=proposal.id, user=world.admin, confirm=True)
    assert refused.value.code == "PROPOSAL_NO_LONGER_EARNED"
    assert mode(world) == "SHADOW"
