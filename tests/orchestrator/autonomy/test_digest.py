"""The daily digest: what ran on its own, what waits, what was blocked, proposals, switches; stored, served, mailed."""
import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from orchestrator.autonomy import digest, review, triggers
from orchestrator.autonomy.models import AutonomyDigest
from plans import services
from plans.models import PlanStatus
from tests.api.helpers import assert_error, client_for
from tests.factories import AccountFactory, allow_autopilot, make_plan
from tests.orchestrator.autonomy.test_review import THRESHOLDS, set_mode, shadow_rows
from tests.orchestrator.test_engine import BRIEF, MEETING, run_until_quiet

pytestmark = pytest.mark.django_db


def a_busy_day(world):
    """One brief ran on its own, one meeting waits for a person, one plan stopped by a kill switch."""
    allow_autopilot(world.tenant, BRIEF)
    ran = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=(BRIEF,), approved_by=world.approver)
    run_until_quiet(ran.id)
    waits = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE,
                      action_types=(MEETING,), approved_by=world.approver)
    run_until_quiet(waits.id)
    stopped = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=PlanStatus.ACTIVE,
                        action_types=(BRIEF,), approved_by=world.approver)
    services.kill_switch_set(tenant_id=world.tenant.id, user=world.admin, engaged=True, reason="audit",
                             action_type=BRIEF)
    run_until_quiet(stopped.id)
    triggers.run_for_tenant(world.tenant.id)


def test_the_digest_tells_what_happened_and_is_mailed_to_admins_once(world):
    world.admin.email = "admin@acme.test"
    world.admin.save()
    a_busy_day(world)
    today = timezone.now().date()
    # when: built twice (a retried beat task)
    first = digest.digest_for_tenant(world.tenant.id, day=today)
    again = digest.digest_for_tenant(world.tenant.id, day=today)
    # then
    assert again.pk == first.pk
    assert AutonomyDigest.objects.count() == 1
    summary = first.summary
    assert (summary["ran_on_its_own"]["count"], summary["ran_on_its_own"]["by_outcome"]) == (1, {"SUCCEEDED": 1})
    assert [item["action_type"] for item in summary["waiting_for_people"]["items"]] == [MEETING]
    assert summary["blocked"]["by_reason"] == {"KILL_SWITCH": 1}
    assert summary["kill_switches_on"] == [BRIEF]
    assert summary["opted_in"] is True
    assert sum(summary["proposals"].values()) >= 1
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["admin@acme.test"]
    assert first.emailed_to == ["admin@acme.test"]
    assert "Ran on its own: 1" in mail.outbox[0].body
    assert f"{BRIEF} for {world.account.name}: SUCCEEDED" in first.text
    assert "Kill switches on: PREP_RENEWAL_BRIEF." in first.text


def test_a_quiet_tenant_that_never_opted_in_gets_a_plain_digest(world):
    result = digest.digest_for_tenant(world.tenant.id, day=timezone.now().date())
    assert result.summary["ran_on_its_own"]["count"] == 0
    assert "has not opted in" in result.text
    assert "No kill switch is on." in result.text
    assert mail.outbox == []  # no admin with an e-mail address


def test_digests_are_served_to_members_of_the_tenant_only(world, other_world):
    digest.digest_for_tenant(world.tenant.id, day=timezone.now().date())
    body = client_for(world.viewer).get("/api/v1/autopilot/digests/").json()
    assert body["count"] == 1
    assert body["results"][0]["day"] == timezone.now().date().isoformat()
    assert client_for(other_world.viewer).get("/api/v1/autopilot/digests/").json()["count"] == 0
    assert_error(client_for(other_world.viewer).get(f"/api/v1/autopilot/digests/?tenant={world.tenant.id}"),
                 404, "NOT_FOUND")


def test_a_failed_mail_is_sent_on_the_next_run_and_other_tenants_still_get_theirs(world, other_world, settings):
    for admin in (world.admin, other_world.admin):
        admin.email = f"{admin.username}@test"
        admin.save()
    day = timezone.now().date()
    failing = {"tenant": world.tenant.id}
    real_send = digest.send_mail

    def send_or_fail(**kwargs):
        if failing["tenant"] and kwargs["recipient_list"] == [f"{world.admin.username}@test"]:
            raise ConnectionRefusedError("mail server down")
        return real_send(**kwargs)

    digest.send_mail = send_or_fail
    try:
        assert digest.digest_all_tenants(day=day) >= 1  # the failing tenant is logged, the others go on
        assert [m.to for m in mail.outbox] == [[f"{other_world.admin.username}@test"]]
        assert AutonomyDigest.objects.get(tenant=world.tenant, day=day).emailed_to == []
        failing["tenant"] = None
        digest.digest_all_tenants(day=day)
    finally:
        digest.send_mail = real_send
    expected = sorted(f"{admin.username}@test" for admin in (world.admin, other_world.admin))
    assert sorted(message.to[0] for message in mail.outbox) == expected
    assert AutonomyDigest.objects.filter(day=day, tenant__in=[world.tenant, other_world.tenant]).count() == 2


@override_settings(**THRESHOLDS)
def test_the_digest_gives_the_evidence_for_autonomy_and_what_the_review_changed(world):
    world.admin.email = "admin@acme.test"
    world.admin.save()
    set_mode(world, "SHADOW")
    shadow_rows(world, ["APPROVED"] * 4 + ["SKIPPED"])
    review.review_tenant(world.tenant.id)  # proposes SHADOW -> AUTO_EXECUTE: 4 of 5 agreed
    result = digest.digest_for_tenant(world.tenant.id, day=timezone.now().date())
    evidence = result.summary["evidence"]
    assert evidence["shadow"] == [{"action_type": BRIEF, "agreed": 4, "decided": 5, "agreement": 0.8,
                                   "window_days": 30}]
    assert [(item["action_type"], item["to_mode"], item["agreed"]) for item in evidence["proposals_open"]] == [
        (BRIEF, "AUTO_EXECUTE", 4)]
    assert [item["reason"] for item in evidence["changes"]] == ["PROMOTION_PROPOSED"]
    assert "people approved 4 of 5 as the policy saw them (80%)" in mail.outbox[0].body
    assert f"{BRIEF}: SHADOW -> AUTO_EXECUTE (4 of 5 agreed)" in mail.outbox[0].body
