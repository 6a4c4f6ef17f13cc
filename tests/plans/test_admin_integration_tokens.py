"""Integration tokens in the console: a tenant admin creates, rotates and revokes them through the services
and sees each secret once, on the page that answers the POST; a plan approver is refused; nothing of
the secret stays in the session, a cookie or the list."""
import hashlib

import pytest
from django.test import Client
from django.urls import reverse

from plans import services
from plans.models import EventType, IntegrationToken, PlanLedgerEntry

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:plans_integrationtoken_changelist"


def console(user) -> Client:
    """A staff user with no Django permission at all: the page goes by the tenant role."""
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def secret_on(response) -> str:
    page = response.content.decode()
    start = page.index('id="token-secret"')
    return page[page.index(">", start) + 1:page.index("</code>", start)]


def assert_nothing_kept(client, response, secret):
    assert secret not in str(dict(client.session.items()))
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    assert all(secret not in morsel.value for morsel in client.cookies.values())
    listed = client.get(reverse(CHANGELIST))
    assert secret not in listed.content.decode()
    assert secret[12:] not in listed.content.decode()


def test_a_tenant_admin_creates_a_token_and_sees_its_secret_once(world):
    client = console(world.admin)

    form = client.get(reverse("admin:plans_integrationtoken_create"))
    response = client.post(reverse("admin:plans_integrationtoken_create"),
                           {"tenant": world.tenant.pk, "name": "Salesforce sync", "expires_at": ""})

    assert form.status_code == 200
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = secret_on(response)
    token = IntegrationToken.objects.get(tenant=world.tenant, name="Salesforce sync")
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.created_by == world.admin
    assert PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.INTEGRATION_TOKEN_CREATED,
                                          data__token_id=str(token.pk)).exists()
    assert services.integration_token_authenticate(secret) == token
    assert_nothing_kept(client, response, secret)
    listed = client.get(reverse(CHANGELIST))
    assert "Salesforce sync" in listed.content.decode()
    assert token.key_hash not in listed.content.decode()


def test_a_refused_create_is_a_form_error(world):
    services.integration_token_create(tenant_id=world.tenant.id, name="crm", user=world.admin)
    client = console(world.admin)

    response = client.post(reverse("admin:plans_integrationtoken_create"), {"tenant": world.tenant.pk, "name": "crm"})

    assert response.status_code == 200
    assert "TOKEN_NAME_TAKEN" in response.content.decode()
    assert IntegrationToken.objects.filter(tenant=world.tenant).count() == 1


def test_rotate_shows_the_new_secret_once_and_refuses_the_old(world):
    token, old_secret = services.integration_token_create(tenant_id=world.tenant.id, name="crm", user=world.admin)
    client = console(world.admin)
    url = reverse("admin:plans_integrationtoken_rotate", args=[token.pk])

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert IntegrationToken.objects.get(pk=token.pk).revoked_at is None  # the GET only asks
    response = client.post(url)

    assert response.status_code == 200
    new_secret = secret_on(response)
    assert new_secret != old_secret
    assert services.integration_token_authenticate(old_secret) is None
    assert services.integration_token_authenticate(new_secret).name == "crm"
    assert_nothing_kept(client, response, new_secret)


def test_revoke_after_confirmation(world):
    token, secret = services.integration_token_create(tenant_id=world.tenant.id, name="crm", user=world.admin)
    client = console(world.admin)
    url = reverse("admin:plans_integrationtoken_revoke", args=[token.pk])

    assert client.get(url).status_code == 200
    assert IntegrationToken.objects.get(pk=token.pk).revoked_at is None
    response = client.post(url)

    assert response.status_code == 302
    assert IntegrationToken.objects.get(pk=token.pk).revoked_at is not None
    assert services.integration_token_authenticate(secret) is None
    assert PlanLedgerEntry.objects.filter(tenant=world.tenant,
                                          event_type=EventType.INTEGRATION_TOKEN_REVOKED).count() == 1


@pytest.mark.parametrize("role", ["approver", "seller", "viewer"])
def test_other_roles_are_refused(world, role):
    token, _ = services.integration_token_create(tenant_id=world.tenant.id, name="crm", user=world.admin)
    client = console(getattr(world, role))

    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(reverse("admin:plans_integrationtoken_create")).status_code == 403
    assert client.post(reverse("admin:plans_integrationtoken_create"),
                       {"tenant": world.tenant.pk, "name": "mine"}).status_code == 403
    for view in ("rotate", "revoke"):
        assert client.post(reverse(f"admin:plans_integrationtoken_{view}", args=[token.pk])).status_code == 403
    assert list(IntegrationToken.objects.values_list("name", "revoked_at")) == [("crm", None)]
    assert "Integration tokens" not in client.get(reverse("admin:index")).content.decode()


def test_another_tenants_admin_sees_nothing_of_the_token(world, other_world):
    token, _ = services.integration_token_create(tenant_id=world.tenant.id, name="crm", user=world.admin)
    client = console(other_world.admin)

    assert str(token.pk) not in client.get(reverse(CHANGELIST)).content.decode()
    assert client.post(reverse("admin:plans_integrationtoken_rotate", args=[token.pk])).status_code == 404
    assert client.post(reverse("admin:plans_integrationtoken_revoke", args=[token.pk])).status_code == 404
    refused = client.post(reverse("admin:plans_integrationtoken_create"), {"tenant": world.tenant.pk, "name": "x"})
    assert refused.status_code == 200  # the form: not one of the tenants offered
    assert IntegrationToken.objects.filter(tenant=world.tenant).count() == 1
    assert IntegrationToken.objects.get(pk=token.pk).revoked_at is None
