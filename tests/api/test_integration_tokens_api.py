"""Integration tokens over HTTP: a tenant admin lists, creates, rotates and revokes them; a token posts
signals to its own tenant's accounts and is refused (401/403) by every other route and method; a
revoked, expired or unknown one is a 401 that does not say which; the secret appears only in the
answers to create and rotate."""
import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.autonomy.models import AutonomyProposal
from orchestrator.execution.service import intent_create
from plans import services
from plans.models import AccountSignal, EventType, IntegrationToken, PlanLedgerEntry, PlanStatus
from tests.api.helpers import assert_error, client_for
from tests.api.test_scoping import api_patterns, methods_of
from tests.factories import make_plan

TOKENS_URL = "/api/v1/integration-tokens/"
SIGNALS_ROUTE = "api/v1/accounts/<uuid:account_id>/signals/"
# Logging in reads only the body and ignores any credential sent with it (revplan.api.auth.TokenView): a
# token there is neither accepted nor refused, and a body that is no login is a 400.
LOGIN = ("api/v1/auth/token/", "post")


def signals_url(account) -> str:
    return f"/api/v1/accounts/{account.id}/signals/"


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def issue(world, name="crm", **kwargs):
    return services.integration_token_create(tenant_id=world.tenant.id, name=name, user=world.admin, **kwargs)


SIGNAL = {"signal_type": "RENEWAL_COMMITTED", "source": "crm", "external_id": "opp-1"}


# --- management, for tenant admins ------------------------------------------------------------------


def test_create_answers_the_secret_once_and_the_list_never(world):
    api = client_for(world.admin)

    created = api.post(TOKENS_URL, {"name": "Salesforce sync"}, format="json")
    assert created["Cache-Control"] == "no-store"  # the secret stays in no cache on the way

    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("rvp_")
    assert body["name"] == "Salesforce sync"
    assert body["state"] == "LIVE"
    assert body["created_by"] == world.admin.username
    assert body["key_prefix"] == secret[:12]
    listed = api.get(TOKENS_URL)
    assert listed.status_code == 200
    assert [row["token_id"] for row in listed.json()["results"]] == [body["token_id"]]
    row = listed.json()["results"][0]
    assert "secret" not in row
    token = IntegrationToken.objects.get(pk=body["token_id"])
    for text in (secret, secret[12:], token.key_hash):
        assert text not in listed.content.decode()


def test_create_with_an_expiry_and_a_taken_name(world):
    api = client_for(world.admin)
    expires_at = (timezone.now() + timedelta(days=7)).isoformat()

    first = api.post(TOKENS_URL, {"name": "crm", "expires_at": expires_at}, format="json")
    again = api.post(TOKENS_URL, {"name": "crm"}, format="json")

    assert first.status_code == 201
    assert first.json()["expires_at"] is not None
    assert_error(again, 409, "TOKEN_NAME_TAKEN")


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x", "expires_at": "2000-01-01T00:00:00Z"},
                                  {"name": "x", "secret": "rvp_mine"}, {"name": "x", "tenant": 5}])
def test_create_refuses_bad_input(world, body):
    response = client_for(world.admin).post(TOKENS_URL, body, format="json")
    assert_error(response, 400, response.json()["code"])
    assert not IntegrationToken.objects.exists()


@pytest.mark.parametrize("role", ["viewer", "seller", "approver"])
def test_only_a_tenant_admin_manages_tokens(world, role):
    token, _ = issue(world)
    api = client_for(getattr(world, role))

    assert_error(api.get(TOKENS_URL), 403, "NOT_ALLOWED")
    assert_error(api.get(TOKENS_URL, {"tenant": str(world.tenant.id)}), 403, "NOT_ALLOWED")
    assert_error(api.post(TOKENS_URL, {"name": "mine"}, format="json"), 403, "NOT_ALLOWED")
    assert_error(api.post(f"{TOKENS_URL}{token.pk}/rotate/"), 403, "NOT_ALLOWED")
    assert_error(api.post(f"{TOKENS_URL}{token.pk}/revoke/"), 403, "NOT_ALLOWED")
    assert IntegrationToken.objects.filter(revoked_at__isnull=True).count() == 1


def test_another_tenants_token_is_not_found(world, other_world):
    token, _ = issue(world)
    api = client_for(other_world.admin)

    assert_error(api.post(f"{TOKENS_URL}{token.pk}/rotate/"), 404, "NOT_FOUND")
    assert_error(api.post(f"{TOKENS_URL}{token.pk}/revoke/"), 404, "NOT_FOUND")
    assert_error(api.get(TOKENS_URL, {"tenant": str(world.tenant.id)}), 404, "NOT_FOUND")
    assert_error(api.post(TOKENS_URL, {"name": "x", "tenant": str(world.tenant.id)}, format="json"), 404,
                 "NOT_FOUND")
    assert api.get(TOKENS_URL).json()["results"] == []


def test_an_admin_of_two_tenants_names_the_tenant(world, other_world):
    services.membership_add(tenant_id=other_world.tenant.id, username=world.admin.username, role="TENANT_ADMIN",
                            user=other_world.admin)
    api = client_for(world.admin)

    assert_error(api.post(TOKENS_URL, {"name": "crm"}, format="json"), 400, "TENANT_REQUIRED")
    created = api.post(TOKENS_URL, {"name": "crm", "tenant": str(other_world.tenant.id)}, format="json")
    issue(world, name="mine")

    assert created.json()["tenant_id"] == str(other_world.tenant.id)
    assert len(api.get(TOKENS_URL).json()["results"]) == 2
    only = api.get(TOKENS_URL, {"tenant": str(other_world.tenant.id)}).json()["results"]
    assert [row["name"] for row in only] == ["crm"]


def test_rotate_answers_a_new_secret_and_the_old_one_is_refused(world):
    token, old_secret = issue(world)
    api = client_for(world.admin)

    rotated = api.post(f"{TOKENS_URL}{token.pk}/rotate/")

    assert rotated.status_code == 201
    new_secret = rotated.json()["secret"]
    assert new_secret != old_secret
    assert rotated.json()["name"] == "crm"
    assert_error(bearer(old_secret).post(signals_url(world.account), SIGNAL, format="json"), 401,
                 "AUTHENTICATION_FAILED")
    assert bearer(new_secret).post(signals_url(world.account), SIGNAL, format="json").status_code == 201
    assert_error(api.post(f"{TOKENS_URL}{token.pk}/rotate/"), 409, "TOKEN_REVOKED")


def test_revoke_answers_the_token_without_its_secret_and_refuses_it(world):
    token, secret = issue(world)

    revoked = client_for(world.admin).post(f"{TOKENS_URL}{token.pk}/revoke/")

    assert revoked.status_code == 200
    assert revoked.json()["state"] == "REVOKED"
    assert "secret" not in revoked.json()
    assert secret not in revoked.content.decode()
    assert_error(bearer(secret).post(signals_url(world.account), SIGNAL, format="json"), 401, "AUTHENTICATION_FAILED")


# --- using a token: signals, and nothing else -------------------------------------------------------


def test_a_token_posts_a_signal_and_the_ledger_names_the_token(world, caplog):
    caplog.set_level("DEBUG")
    token, secret = issue(world, name="Salesforce sync")

    response = bearer(secret).post(signals_url(world.account), SIGNAL, format="json")

    assert response.status_code == 201, response.content
    signal = AccountSignal.objects.get(account=world.account, external_id="opp-1")
    assert signal.signal_type == "RENEWAL_COMMITTED"
    entry = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.SIGNAL_RECORDED).get()
    assert entry.actor == f"integration:{token.pk}"
    assert entry.data["integration_token_name"] == "Salesforce sync"
    assert "with integration token 'Salesforce sync'" in entry.explanation
    assert IntegrationToken.objects.get(pk=token.pk).last_used_at is not None
    assert secret not in response.content.decode()
    assert secret not in caplog.text
    assert token.key_hash not in caplog.text


def test_the_same_signal_twice_is_stored_once(world):
    _, secret = issue(world)

    first = bearer(secret).post(signals_url(world.account), SIGNAL, format="json")
    second = bearer(secret).post(signals_url(world.account), SIGNAL, format="json")

    assert (first.status_code, second.status_code) == (201, 200)
    assert AccountSignal.objects.filter(account=world.account, external_id="opp-1").count() == 1


def test_a_token_cannot_reach_another_tenants_account(world, other_world):
    _, secret = issue(world)

    response = bearer(secret).post(signals_url(other_world.account), SIGNAL, format="json")

    assert_error(response, 404, "NOT_FOUND")
    assert not AccountSignal.objects.filter(account=other_world.account, external_id="opp-1").exists()


def test_revoked_expired_and_unknown_tokens_get_the_same_401(world):
    revoked, revoked_secret = issue(world, name="revoked")
    services.integration_token_revoke(token_id=revoked.pk, user=world.admin)
    expired, expired_secret = issue(world, name="expired", expires_at=timezone.now() + timedelta(hours=1))
    IntegrationToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    unknown = "rvp_" + "A" * 43

    bodies = []
    for secret in (revoked_secret, expired_secret, unknown, "not-even-ours", "rvp_ two parts"):
        response = bearer(secret).post(signals_url(world.account), SIGNAL, format="json")
        bodies.append(assert_error(response, 401, "AUTHENTICATION_FAILED"))
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert all(body == bodies[0] for body in bodies)
    assert not AccountSignal.objects.filter(external_id="opp-1").exists()


@pytest.fixture
def own_ids(world):
    """Ids of the token's own tenant for every route parameter: the token must be refused even there."""
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE)
    intent = intent_create(tenant_id=world.tenant.id, account_id=world.account.id, action_type="PREP_RENEWAL_BRIEF",
                           expires_at=timezone.now() + timedelta(hours=1), approved_by=world.approver)
    token, secret = issue(world)
    proposal = AutonomyProposal.objects.create(tenant=world.tenant, action_type="PREP_RENEWAL_BRIEF",
                                               from_mode="SHADOW", to_mode="AUTO_EXECUTE", evidence={},
                                               proposed_at=timezone.now())
    return secret, {"plan_id": plan.id, "proposal_id": proposal.id, "step_id": plan.steps.first().step_id,
                    "account_id": world.account.id,
                    "intent_id": intent.id, "action_type": "PREP_RENEWAL_BRIEF", "connector": "crm",
                    "token_id": token.pk}


def test_a_token_is_refused_by_every_route_but_the_signals_post(own_ids):
    secret, ids = own_ids
    client = bearer(secret)
    accepted = []
    for route, pattern in api_patterns():
        path = "/" + route
        for name in pattern.pattern.converters:
            assert name in ids, f"{route}: add the own tenant's value for <{name}> to own_ids"
            path = re.sub(rf"<(\w+:)?{name}>", str(ids[name]), path)
        for method in methods_of(pattern):
            body = SIGNAL if method != "get" else None
            response = getattr(client, method)(path, body, format="json") if body else client.get(path)
            if (route, method) == (SIGNALS_ROUTE, "post"):
                assert response.status_code == 201, response.content
                accepted.append(route)
                continue
            if (route, method) == LOGIN:
                assert response.status_code == 400, response.content
                continue
            assert response.status_code in (401, 403), f"{method.upper()} {path}: {response.status_code}"
            if route.startswith("api/v1/"):  # the schema's own routes answer in its media types
                assert set(response.json()) == {"code", "detail", "reasons"}
    assert accepted == [SIGNALS_ROUTE]


def test_a_token_sent_as_a_users_token_is_refused(world):
    _, secret = issue(world)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")

    assert_error(client.post(signals_url(world.account), SIGNAL, format="json"), 401, "AUTHENTICATION_FAILED")
    assert_error(client.get(TOKENS_URL), 401, "AUTHENTICATION_FAILED")


def test_the_schema_documents_the_bearer_scheme_on_the_signals_post_only(db):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    assert schema["components"]["securitySchemes"]["integrationToken"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "rvp_…",
        "description": schema["components"]["securitySchemes"]["integrationToken"]["description"]}
    operations = schema["paths"]["/api/v1/accounts/{account_id}/signals/"]
    assert {"integrationToken": []} in operations["post"]["security"]
    assert {"integrationToken": []} not in operations["get"]["security"]
    for path in ("/api/v1/integration-tokens/", "/api/v1/integration-tokens/{token_id}/rotate/",
                 "/api/v1/integration-tokens/{token_id}/revoke/"):
        for operation in schema["paths"][path].values():
            assert {"integrationToken": []} not in operation["security"]
            assert {"401", "403"} <= set(operation["responses"])


def test_a_token_is_throttled_per_token_at_the_user_rate(world, settings):
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"revplan:test:{uuid.uuid4().hex}"}}
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "user": "2/minute", "anon": "1/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    _, first_secret = issue(world, name="first")
    _, second_secret = issue(world, name="second")

    def post(secret, n):
        return bearer(secret).post(signals_url(world.account), {**SIGNAL, "external_id": f"opp-{n}"}, format="json",
                                   REMOTE_ADDR="10.9.0.1")

    # Two from one address get past the anonymous rate of one: they are the token's, not the address's.
    assert [post(first_secret, n).status_code for n in range(2)] == [201, 201]
    assert_error(post(first_secret, 3), 429, "THROTTLED")
    assert post(second_secret, 4).status_code == 201  # another token behind the same address has its own count
