"""Autonomy evidence in the console: shadow decisions and proposals listed per tenant; a tenant admin confirms or
dismisses a proposal through the service (ledgered), anyone else is refused and nothing changes."""
from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from orchestrator.autonomy.models import ActionTypeAutonomy, AutonomyProposal
from plans.models import EventType, PlanLedgerEntry
from tests.orchestrator.autonomy.test_review import THRESHOLDS, shadow_rows
from tests.orchestrator.test_admin_breakers import console

pytestmark = pytest.mark.django_db
PROPOSALS = "admin:orchestrator_autonomyproposal_changelist"
BRIEF = "PREP_RENEWAL_BRIEF"


def proposal_for(world) -> AutonomyProposal:
    ActionTypeAutonomy.objects.create(tenant=world.tenant, action_type=BRIEF, mode="SHADOW")
    shadow_rows(world, ["APPROVED"] * 5)  # what confirming weighs again
    return AutonomyProposal.objects.create(
        tenant=world.tenant, action_type=BRIEF, from_mode="SHADOW", to_mode="AUTO_EXECUTE",
        evidence={"agreed": 19, "decisions": 20, "window_days": 30, "min_agreement": 0.9, "min_decisions": 20},
        proposed_at=timezone.now() - timedelta(hours=1))


def promotions(world) -> int:
    return PlanLedgerEntry.objects.filter(tenant_id=world.tenant.id, event_type=EventType.AUTONOMY_CHANGED,
                                          reason_code="PROMOTION_CONFIRMED").count()


@override_settings(**THRESHOLDS)
def test_a_tenant_admin_confirms_a_proposal_from_the_list(world):
    proposal = proposal_for(world)
    client = console(world.admin)
    page = client.get(reverse(PROPOSALS))
    assert b"19 of 20 agreed over 30 days" in page.content
    response = client.post(reverse(PROPOSALS), {"action": "confirm", "_selected_action": [str(proposal.pk)]},
                           follow=True)
    assert b"now AUTO_EXECUTE" in response.content
    assert ActionTypeAutonomy.objects.get(tenant=world.tenant, action_type=BRIEF).mode == "AUTO_EXECUTE"
    assert promotions(world) == 1


def test_an_approver_sees_the_proposal_but_may_not_confirm_it(world):
    proposal = proposal_for(world)
    client = console(world.approver)
    response = client.post(reverse(PROPOSALS), {"action": "confirm", "_selected_action": [str(proposal.pk)]},
                           follow=True)
    assert b"not confirmed" in response.content
    assert ActionTypeAutonomy.objects.get(tenant=world.tenant, action_type=BRIEF).mode == "SHADOW"
    assert promotions(world) == 0


def test_a_dismissal_keeps_the_mode(world):
    proposal = proposal_for(world)
    console(world.admin).post(reverse(PROPOSALS), {"action": "dismiss", "_selected_action": [str(proposal.pk)]})
    proposal.refresh_from_db()
    assert proposal.status == "DISMISSED"
    assert ActionTypeAutonomy.objects.get(tenant=world.tenant, action_type=BRIEF).mode == "SHADOW"
