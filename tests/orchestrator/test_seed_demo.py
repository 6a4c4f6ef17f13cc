"""seed_demo: the demo world of DESIGN §8, created once however often the command runs."""
from datetime import timedelta
from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from plans import ledger, services
from plans.models import Account, AccountSignal, Membership, PlanLedgerEntry, PlanStatus, RevenuePlan, Role, Tenant

EXPECTED_USERS = {
    "acme-viewer": ("acme-corp", Role.VIEWER),
    "acme-seller": ("acme-corp", Role.SELLER),
    "acme-approver": ("acme-corp", Role.PLAN_APPROVER),
    "acme-admin": ("acme-corp", Role.TENANT_ADMIN),
    "globex-seller": ("globex", Role.SELLER),
    "globex-admin": ("globex", Role.TENANT_ADMIN),
}


def counts() -> dict:
    return {
        model.__name__: model.objects.count()
        for model in (Tenant, get_user_model(), Membership, Account, AccountSignal, RevenuePlan, PlanLedgerEntry)
    }


def test_seed_demo_is_idempotent_and_matches_the_design(db, settings):
    settings.DEMO_PASSWORD = "demo-pass"
    out = StringIO()
    # when
    call_command("seed_demo", stdout=out)
    first = counts()
    call_command("seed_demo", stdout=StringIO())
    # then
    assert counts() == first
    assert "demo-pass" in out.getvalue()
    for username, (slug, role) in EXPECTED_USERS.items():
        user = get_user_model().objects.get(username=username)
        assert user.check_password("demo-pass")
        assert Membership.objects.get(user=user, tenant__slug=slug).role == role
        assert username in out.getvalue()
    today = timezone.localdate()
    for slug in ("acme-corp", "globex"):
        accounts = Account.objects.filter(tenant__slug=slug)
        assert accounts.count() == 20
        assert all(today + timedelta(days=40) <= a.renewal_date <= today + timedelta(days=120) for a in accounts)
        assert all(a.owner is not None for a in accounts)
        assert AccountSignal.objects.filter(account__tenant__slug=slug, signal_type="SUPPORT_RISK").exists()
        drafts = RevenuePlan.objects.filter(tenant__slug=slug, plan_status=PlanStatus.DRAFT)
        assert drafts.count() >= 2
        approver_ids = Membership.objects.filter(
            tenant__slug=slug, role__in=[Role.PLAN_APPROVER, Role.TENANT_ADMIN]
        ).values_list("user_id", flat=True)
        assert not {f"user:{user_id}" for user_id in approver_ids} & set(drafts.values_list("created_by", flat=True))
    # Acme opted in for the brief (ledgered once, however often seeded); Globex has it in shadow mode.
    from orchestrator.autonomy.services import autonomy_settings

    acme, globex = (autonomy_settings(Tenant.objects.get(slug=slug).id) for slug in ("acme-corp", "globex"))
    modes = {row["action_type"]: row["mode"] for row in acme["action_types"]}
    assert acme["opted_in"]
    assert modes["PREP_RENEWAL_BRIEF"] == "AUTO_EXECUTE"
    assert modes["REQUEST_RENEWAL_MEETING"] == modes["ESCALATE_SUPPORT_RISK"] == "APPROVAL_REQUIRED"
    assert not globex["opted_in"]
    assert {row["action_type"]: row["mode"] for row in globex["action_types"]} == {
        "PREP_RENEWAL_BRIEF": "SHADOW", "REQUEST_RENEWAL_MEETING": "APPROVAL_REQUIRED",
        "ESCALATE_SUPPORT_RISK": "APPROVAL_REQUIRED"}
    assert PlanLedgerEntry.objects.filter(tenant__slug="acme-corp", event_type="AUTONOMY_CHANGED").count() == 2
    assert PlanLedgerEntry.objects.filter(tenant__slug="globex", event_type="AUTONOMY_CHANGED").count() == 1
    assert ledger.verify_ledger().ok


def test_seeded_drafts_can_be_approved_by_the_demo_approver(db):
    call_command("seed_demo", stdout=StringIO())
    approver = get_user_model().objects.get(username="acme-approver")
    medium_risk_draft = RevenuePlan.objects.filter(
        tenant__slug="acme-corp", plan_status=PlanStatus.DRAFT, risk_level="MEDIUM"
    ).first()
    plan = services.plan_approve(plan_id=medium_risk_draft.id, user=approver)
    assert plan.plan_status == PlanStatus.APPROVED
