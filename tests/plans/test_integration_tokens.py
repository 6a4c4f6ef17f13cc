"""Integration tokens through the services: only a tenant admin manages them, the secret is never stored
nor ledgered, rotate and revoke refuse the old secret, an expired one is refused, last use is coarse."""
import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from plans import ledger, services
from plans.errors import Conflict, NotAllowed, NotFound, ValidationFailed
from plans.models import EventType, IntegrationToken, PlanLedgerEntry, Role
from plans.services.integration_tokens import LAST_USED_RESOLUTION, SECRET_PREFIX

pytestmark = pytest.mark.django_db


def create(world, name="crm", **kwargs):
    return services.integration_token_create(tenant_id=world.tenant.id, name=name, user=world.admin, **kwargs)


def token_entries(tenant):
    return list(PlanLedgerEntry.objects.filter(tenant=tenant, event_type__startswith="INTEGRATION_TOKEN_")
                .order_by("chain_seq"))


def test_create_stores_the_hash_not_the_secret_and_ledgers_the_token_by_name(world):
    token, secret = create(world, name="Salesforce sync")

    assert secret.startswith(SECRET_PREFIX)
    assert len(secret) >= 40
    row = IntegrationToken.objects.get(pk=token.pk)
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.key_prefix == secret[:12]
    stored = " ".join(str(value) for value in IntegrationToken.objects.filter(pk=token.pk).values().first().values())
    assert secret not in stored
    assert secret[len(SECRET_PREFIX):] not in stored
    [entry] = token_entries(world.tenant)
    assert entry.event_type == EventType.INTEGRATION_TOKEN_CREATED
    assert entry.actor == ledger.user_actor(world.admin)
    assert entry.data["token_id"] == str(token.pk)
    assert entry.data["name"] == "Salesforce sync"
    assert "Salesforce sync" in entry.explanation
    assert ledger.verify_ledger(tenant_id=world.tenant.id).ok


def test_secrets_are_different_each_time(world):
    _, first = create(world, name="a")
    _, second = create(world, name="b")
    assert first != second


@pytest.mark.parametrize("role", [Role.VIEWER, Role.SELLER, Role.PLAN_APPROVER])
def test_only_a_tenant_admin_creates_rotates_and_revokes(world, role):
    token, _ = create(world)
    user = world.users[role]

    with pytest.raises(NotAllowed):
        services.integration_token_create(tenant_id=world.tenant.id, name="mine", user=user)
    with pytest.raises(NotAllowed):
        services.integration_token_rotate(token_id=token.pk, user=user)
    with pytest.raises(NotAllowed):
        services.integration_token_revoke(token_id=token.pk, user=user)

    assert IntegrationToken.objects.filter(tenant=world.tenant).count() == 1
    assert len(token_entries(world.tenant)) == 1
    with pytest.raises(NotAllowed):
        services.integration_tokens_list(user=user)


def test_another_tenants_admin_finds_no_token(world, other_world):
    token, _ = create(world)

    for call in (services.integration_token_rotate, services.integration_token_revoke):
        with pytest.raises(NotFound):
            call(token_id=token.pk, user=other_world.admin)
    with pytest.raises(NotFound):
        services.integration_token_create(tenant_id=world.tenant.id, name="x", user=other_world.admin)
    assert list(services.integration_tokens_list(user=other_world.admin)) == []
    with pytest.raises(NotFound):
        services.integration_tokens_list(user=other_world.admin, tenant_id=world.tenant.id)
    assert IntegrationToken.objects.get(pk=token.pk).revoked_at is None


def test_a_live_name_is_unique_per_tenant_and_free_again_once_revoked(world, other_world):
    token, _ = create(world, name="crm")
    services.integration_token_create(tenant_id=other_world.tenant.id, name="crm", user=other_world.admin)

    with pytest.raises(Conflict) as refused:
        create(world, name="crm")
    assert refused.value.code == "TOKEN_NAME_TAKEN"

    services.integration_token_revoke(token_id=token.pk, user=world.admin)
    again, _ = create(world, name="crm")
    assert again.pk != token.pk


@pytest.mark.parametrize(("name", "expires_in"), [
    ("", None), ("   ", None), ("x" * 101, None), ("tab\there", None),
    ("past", timedelta(seconds=-1)), ("too far", timedelta(days=3661)),
])
def test_refused_input(world, name, expires_in):
    with pytest.raises(ValidationFailed):
        create(world, name=name, expires_at=timezone.now() + expires_in if expires_in else None)
    assert not IntegrationToken.objects.exists()


def test_authenticate_accepts_the_live_secret_only(world):
    token, secret = create(world)

    assert services.integration_token_authenticate(secret) == token
    for wrong in (secret + "x", secret[:-1], secret.upper(), "", None, 42, "rvp_", "Token " + secret,
                  SECRET_PREFIX + "a" * 500, token.key_hash):
        assert services.integration_token_authenticate(wrong) is None, wrong


def test_rotate_revokes_the_old_secret_and_keeps_name_and_lifetime(world):
    token, old_secret = create(world, name="crm", expires_at=timezone.now() + timedelta(days=30))
    lifetime = token.expires_at - token.created_at

    new, new_secret = services.integration_token_rotate(token_id=token.pk, user=world.admin)

    assert new.pk != token.pk
    assert new.name == "crm"
    assert new_secret != old_secret
    assert new.expires_at - new.created_at == lifetime
    assert IntegrationToken.objects.get(pk=token.pk).revoked_at is not None
    assert services.integration_token_authenticate(old_secret) is None
    assert services.integration_token_authenticate(new_secret) == new
    entry = token_entries(world.tenant)[-1]
    assert entry.event_type == EventType.INTEGRATION_TOKEN_ROTATED
    assert entry.data["token_id"] == str(new.pk)
    assert entry.data["replaces"]["token_id"] == str(token.pk)
    with pytest.raises(Conflict) as refused:
        services.integration_token_rotate(token_id=token.pk, user=world.admin)
    assert refused.value.code == "TOKEN_REVOKED"


def test_rotating_a_token_without_expiry_gives_one_without_expiry(world):
    token, _ = create(world)
    new, _ = services.integration_token_rotate(token_id=token.pk, user=world.admin)
    assert new.expires_at is None


def test_revoke_refuses_the_secret_and_revoking_again_changes_nothing(world):
    token, secret = create(world)

    services.integration_token_revoke(token_id=token.pk, user=world.admin)
    revoked_at = IntegrationToken.objects.get(pk=token.pk).revoked_at
    services.integration_token_revoke(token_id=token.pk, user=world.admin)

    assert services.integration_token_authenticate(secret) is None
    assert IntegrationToken.objects.get(pk=token.pk).revoked_at == revoked_at
    assert [entry.event_type for entry in token_entries(world.tenant)] == [
        EventType.INTEGRATION_TOKEN_CREATED, EventType.INTEGRATION_TOKEN_REVOKED]


def test_an_expired_token_is_refused_and_may_be_rotated(world):
    token, secret = create(world, expires_at=timezone.now() + timedelta(hours=1))
    IntegrationToken.objects.filter(pk=token.pk).update(created_at=timezone.now() - timedelta(hours=2),
                                                        expires_at=timezone.now() - timedelta(hours=1))

    assert services.integration_token_authenticate(secret) is None
    new, new_secret = services.integration_token_rotate(token_id=token.pk, user=world.admin)
    assert services.integration_token_authenticate(new_secret) == new
    assert new.expires_at > timezone.now()


def test_last_used_is_written_at_most_once_a_minute(world, django_assert_num_queries):
    token, secret = create(world)

    services.integration_token_authenticate(secret)
    first_use = IntegrationToken.objects.get(pk=token.pk).last_used_at
    with django_assert_num_queries(1):  # the lookup only: no write within the minute
        services.integration_token_authenticate(secret)
    assert first_use is not None
    assert IntegrationToken.objects.get(pk=token.pk).last_used_at == first_use

    IntegrationToken.objects.filter(pk=token.pk).update(last_used_at=first_use - LAST_USED_RESOLUTION)
    services.integration_token_authenticate(secret)
    assert IntegrationToken.objects.get(pk=token.pk).last_used_at > first_use


def test_no_secret_nor_hash_in_the_ledger_or_the_logs(world, caplog):
    caplog.set_level("DEBUG")
    token, secret = create(world)
    new, new_secret = services.integration_token_rotate(token_id=token.pk, user=world.admin)
    services.integration_token_authenticate(new_secret)
    services.integration_token_revoke(token_id=new.pk, user=world.admin)

    written = " ".join(f"{entry.explanation} {entry.data}" for entry in PlanLedgerEntry.objects.filter(
        tenant=world.tenant))
    for value in (secret, new_secret, token.key_hash, new.key_hash, secret[12:], new_secret[12:]):
        assert value not in written
        assert value not in caplog.text
