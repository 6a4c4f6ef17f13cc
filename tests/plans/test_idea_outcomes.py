"""The outcome taxonomy's ideas (DESIGN §5): IDEA_REJECTED when a person aborts a DRAFT (the reason kept),
IDEA_EDITED when a plan is approved after a person edited it; in the ledger, as AccountSignals, in the digest."""
from django.utils import timezone

from orchestrator.autonomy import digest
from plans.models import AccountSignal, EventType, PlanLedgerEntry, PlanStatus
from tests.api.helpers import client_for
from tests.factories import AccountFactory, make_plan

PLANS = "/api/v1/plans/"


def signals_of(world, signal_type) -> list[AccountSignal]:
    return list(AccountSignal.objects.filter(account__tenant=world.tenant, signal_type=signal_type))


def test_aborting_a_draft_rejects_the_idea_with_the_reason(world):
    draft = make_plan(account=world.account, status=PlanStatus.DRAFT)
    response = client_for(world.approver).post(f"{PLANS}{draft.id}/abort/", {"reason": "Customer already renewed."},
                                               format="json")
    assert response.status_code == 200, response.content
    [entry] = PlanLedgerEntry.objects.filter(plan_id=draft.id, event_type=EventType.PLAN_ABORTED)
    assert (entry.data["facts"]["outcome"], entry.data["facts"]["reason"]) == (
        "IDEA_REJECTED", "Customer already renewed.")
    [signal] = signals_of(world, "IDEA_REJECTED")
    assert signal.account_id == world.account.id
    assert (signal.payload["plan_id"], signal.payload["reason"], signal.payload["rejected_by"]) == (
        str(draft.id), "Customer already renewed.", world.approver.pk)


def test_aborting_a_plan_that_was_approved_rejects_no_idea(world):
    active = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    assert client_for(world.seller).post(f"{PLANS}{active.id}/abort/", {"reason": "deal lost"},
                                         format="json").status_code == 200
    assert signals_of(world, "IDEA_REJECTED") == []
    [entry] = PlanLedgerEntry.objects.filter(plan_id=active.id, event_type=EventType.PLAN_ABORTED)
    assert "outcome" not in entry.data.get("facts", {})


def test_approving_an_edited_draft_records_the_idea_as_edited(world):
    draft = make_plan(account=world.account, status=PlanStatus.DRAFT)
    edited = client_for(world.seller).patch(f"{PLANS}{draft.id}/", {"objective": "Renew at +5%"}, format="json")
    assert edited.status_code == 200, edited.content
    approved = client_for(world.approver).post(f"{PLANS}{draft.id}/approve/", {}, format="json")
    assert approved.status_code == 200, approved.content
    [entry] = PlanLedgerEntry.objects.filter(plan_id=draft.id, event_type=EventType.PLAN_APPROVED)
    assert (entry.data["facts"]["outcome"], entry.data["facts"]["edited_by"]) == ("IDEA_EDITED", [world.seller.pk])
    [signal] = signals_of(world, "IDEA_EDITED")
    assert (signal.payload["plan_id"], signal.payload["edited_by"], signal.payload["approved_by"]) == (
        str(draft.id), [world.seller.pk], world.approver.pk)


def test_approving_a_draft_as_proposed_records_no_edit(world):
    draft = make_plan(account=world.account, status=PlanStatus.DRAFT)
    assert client_for(world.approver).post(f"{PLANS}{draft.id}/approve/", {}, format="json").status_code == 200
    assert signals_of(world, "IDEA_EDITED") == []


def test_the_digest_counts_and_lists_the_days_rejected_and_edited_ideas(world, other_world):
    rejected = make_plan(account=world.account, status=PlanStatus.DRAFT)
    client_for(world.approver).post(f"{PLANS}{rejected.id}/abort/", {"reason": "Wrong contact."}, format="json")
    other_account = AccountFactory(tenant=world.tenant, owner=world.seller)
    edited = make_plan(account=other_account, status=PlanStatus.DRAFT)
    client_for(world.seller).patch(f"{PLANS}{edited.id}/", {"objective": "Renew at +5%"}, format="json")
    client_for(world.approver).post(f"{PLANS}{edited.id}/approve/", {}, format="json")
    theirs = make_plan(account=other_world.account, status=PlanStatus.DRAFT)  # another tenant's day
    client_for(other_world.admin).post(f"{PLANS}{theirs.id}/abort/", {"reason": "theirs"}, format="json")

    summary = digest.build_summary(world.tenant.id, day=timezone.now().date())
    text = digest.render_text(summary)

    ideas = summary["ideas"]
    assert (ideas["rejected"]["count"], ideas["edited"]["count"]) == (1, 1)
    assert ideas["rejected"]["items"] == [{"plan_id": str(rejected.id), "account": world.account.name,
                                           "plan_type": "RENEWAL_DEFENSE", "reason": "Wrong contact."}]
    assert ideas["edited"]["items"][0]["plan_id"] == str(edited.id)
    assert "Proposals people rejected: 1" in text
    assert f"RENEWAL_DEFENSE for {world.account.name} (plan {rejected.id}): Wrong contact." in text
    assert "Plans approved after people edited them: 1" in text
    assert "theirs" not in text
