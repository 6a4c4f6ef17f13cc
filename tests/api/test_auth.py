"""Token endpoint and the §7 error shape on authentication failures and bad input."""
import json
import uuid
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

TOKEN_URL = "/api/v1/auth/token/"
ME_URL = "/api/v1/me/"


@pytest.fixture
def client():
    return APIClient()


def assert_error_shape(body: dict, code: str) -> None:
    assert set(body) == {"code", "detail", "reasons"}
    assert body["code"] == code
    assert body["detail"]
    assert all(set(reason) == {"code", "detail"} for reason in body["reasons"])


def test_token_for_valid_credentials_authenticates_later_requests(client, world):
    # when
    response = client.post(TOKEN_URL, {"username": world.approver.username, "password": "pw"}, format="json")
    # then
    assert response.status_code == 200
    token = response.json()["token"]
    assert Token.objects.get(user=world.approver).key == token
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = client.get(ME_URL)
    assert me.status_code == 200
    assert me.json() == {
        "username": world.approver.username,
        "memberships": [{"tenant_id": str(world.tenant.id), "tenant_slug": world.tenant.slug, "role": "PLAN_APPROVER"}],
    }


def test_token_is_stable_across_logins(client, world):
    first = client.post(TOKEN_URL, {"username": world.seller.username, "password": "pw"}, format="json").json()
    second = client.post(TOKEN_URL, {"username": world.seller.username, "password": "pw"}, format="json").json()
    assert first == second


def test_wrong_password_is_401_and_issues_no_token(client, world):
    response = client.post(TOKEN_URL, {"username": world.seller.username, "password": "wrong"}, format="json")
    assert response.status_code == 401
    assert_error_shape(response.json(), "AUTHENTICATION_FAILED")
    assert not Token.objects.filter(user=world.seller).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "someone"}, "password"),
        ({"password": "pw"}, "username"),
        ({"username": ["a", "b"], "password": "pw"}, "username"),
        ({"username": "x" * 10_000, "password": "pw"}, "username"),
    ],
)
def test_missing_or_wrong_typed_fields_are_400_with_field_reasons(client, db, payload, field):
    response = client.post(TOKEN_URL, payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert_error_shape(body, "VALIDATION_ERROR")
    assert any(reason["detail"].startswith(f"{field}:") for reason in body["reasons"])
    assert Token.objects.count() == 0


def test_malformed_json_is_400(client, db):
    response = client.generic("POST", TOKEN_URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert_error_shape(response.json(), "MALFORMED_REQUEST")


def test_huge_body_is_refused_before_parsing(client, db, settings):
    body = json.dumps({"username": "u", "password": "p", "padding": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = client.generic("POST", TOKEN_URL, body, content_type="application/json")
    assert response.status_code == 413
    assert_error_shape(response.json(), "REQUEST_TOO_LARGE")
    assert Token.objects.count() == 0


@pytest.mark.parametrize("authorization", [None, "Token not-a-real-token", "Bearer abc"])
def test_unauthenticated_requests_are_401(client, db, authorization):
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.get(ME_URL)
    assert response.status_code == 401
    assert response.json()["code"] in {"NOT_AUTHENTICATED", "AUTHENTICATION_FAILED"}


def test_openapi_schema_documents_the_token_endpoint(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert "post" in paths[TOKEN_URL]
    assert {"200", "400", "401"} <= set(paths[TOKEN_URL]["post"]["responses"])


# --- Throttling ------------------------------------------------------------------------------


@pytest.fixture
def throttle_rates(settings):
    """Sets throttle rates for one test; counts go under a cache prefix of its own (no other test's or run's)."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"revplan:test:{uuid.uuid4().hex}"}}

    def set_rates(**rates: str) -> None:
        current = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**current, **rates}}

    return set_rates


def ask_token(client, username: str, *, address: str = "10.0.0.1", password: str = "pw", **headers):
    return client.post(TOKEN_URL, {"username": username, "password": password}, format="json",
                       REMOTE_ADDR=address, **headers)


def assert_throttled(response) -> None:
    assert response.status_code == 429
    assert_error_shape(response.json(), "THROTTLED")
    assert int(response["Retry-After"]) > 0


def test_token_endpoint_answers_429_past_its_rate_per_address(client, world, throttle_rates):
    # given
    throttle_rates(token_address="3/minute", token_username="100/minute")
    # when: one address tries three users' passwords, then a fourth
    answers = [ask_token(client, name, password="wrong").status_code
               for name in (world.viewer.username, world.seller.username, world.admin.username)]
    fourth = ask_token(client, world.approver.username)
    # then
    assert answers == [401, 401, 401]
    assert_throttled(fourth)
    assert not Token.objects.filter(user=world.approver).exists()
    assert ask_token(client, world.approver.username, address="10.0.0.2").status_code == 200


def test_token_endpoint_answers_429_past_its_rate_per_username(client, world, throttle_rates):
    # given
    throttle_rates(token_address="100/minute", token_username="3/minute")
    # when: three addresses try one user's password, then a fourth address, with the right one
    answers = [ask_token(client, world.seller.username, address=f"10.0.1.{n}", password="wrong").status_code
               for n in range(3)]
    fourth = ask_token(client, world.seller.username.upper(), address="10.0.1.9")
    # then: refused however it is spelt, and other users are not affected
    assert answers == [401, 401, 401]
    assert_throttled(fourth)
    assert ask_token(client, world.viewer.username, address="10.0.1.9").status_code == 200


def test_a_client_sent_forwarded_for_does_not_dodge_the_address_limit(client, world, throttle_rates):
    throttle_rates(token_address="2/minute", token_username="100/minute")
    for n in range(2):
        ask_token(client, world.viewer.username, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert_throttled(ask_token(client, world.viewer.username, HTTP_X_FORWARDED_FOR="192.0.2.99"))


def test_behind_a_proxy_the_forwarded_address_is_the_clients(client, world, throttle_rates, settings):
    throttle_rates(token_address="2/minute", token_username="100/minute")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    for _ in range(2):
        ask_token(client, world.viewer.username, HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert_throttled(ask_token(client, world.viewer.username, HTTP_X_FORWARDED_FOR="192.0.2.1"))
    assert ask_token(client, world.viewer.username, HTTP_X_FORWARDED_FOR="192.0.2.2").status_code == 200


def test_authenticated_requests_are_limited_per_user(client, world, throttle_rates):
    throttle_rates(user="2/minute")
    client.force_authenticate(world.seller)
    assert [client.get(ME_URL).status_code for _ in range(2)] == [200, 200]
    assert_throttled(client.get(ME_URL))
    client.force_authenticate(world.viewer)
    assert client.get(ME_URL).status_code == 200


def test_anonymous_requests_are_limited_per_address(client, db, throttle_rates):
    # What anybody may call (DRF refuses the unauthenticated before it counts them elsewhere): the schema.
    throttle_rates(anon="2/minute")

    def schema(address):
        return client.get("/api/schema/", REMOTE_ADDR=address, HTTP_ACCEPT="application/json")

    assert [schema("10.0.2.1").status_code for _ in range(2)] == [200, 200]
    assert_throttled(schema("10.0.2.1"))
    assert schema("10.0.2.2").status_code == 200


def test_throttling_lets_requests_through_when_redis_does_not_answer(client, world, throttle_rates, settings):
    throttle_rates(token_address="1/minute", token_username="1/minute")
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    assert [ask_token(client, world.viewer.username).status_code for _ in range(2)] == [200, 200]


def test_schema_documents_429_on_the_token_endpoint(client, db):
    paths = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)["paths"]
    assert "429" in paths[TOKEN_URL]["post"]["responses"]


# --- Expiry and revocation -------------------------------------------------------------------


def login(client, user) -> dict:
    response = client.post(TOKEN_URL, {"username": user.username, "password": "pw"}, format="json")
    assert response.status_code == 200
    return response.json()


def age_token(key: str, *, hours: float) -> None:
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=hours))


def test_token_response_says_when_it_expires(client, world, settings):
    settings.REVPLAN_TOKEN_TTL_HOURS = 24
    body = login(client, world.seller)
    created = Token.objects.get(key=body["token"]).created
    assert datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")) == created + timedelta(hours=24)


def test_expired_token_is_401_in_the_error_shape(client, world, settings):
    # given
    settings.REVPLAN_TOKEN_TTL_HOURS = 24
    token = login(client, world.seller)["token"]
    age_token(token, hours=24.01)
    # when
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get(ME_URL)
    # then
    assert response.status_code == 401
    assert_error_shape(response.json(), "AUTHENTICATION_FAILED")
    assert "expired" in response.json()["detail"]
    assert response["WWW-Authenticate"] == "Token"


def test_a_token_within_its_lifetime_authenticates(client, world, settings):
    settings.REVPLAN_TOKEN_TTL_HOURS = 24
    token = login(client, world.seller)["token"]
    age_token(token, hours=23.9)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(ME_URL).status_code == 200


def test_logging_in_after_expiry_issues_a_new_token(client, world, settings):
    # given
    settings.REVPLAN_TOKEN_TTL_HOURS = 1
    old = login(client, world.seller)["token"]
    age_token(old, hours=2)
    # when: the client still sends its old token, as a client library would
    client.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    new = login(client, world.seller)["token"]
    # then
    assert new != old
    assert list(Token.objects.filter(user=world.seller).values_list("key", flat=True)) == [new]
    client.credentials(HTTP_AUTHORIZATION=f"Token {new}")
    assert client.get(ME_URL).status_code == 200


def test_delete_revokes_the_token(client, world):
    # given
    token = login(client, world.seller)["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    # when
    response = client.delete(TOKEN_URL)
    # then
    assert response.status_code == 204
    assert not Token.objects.filter(key=token).exists()
    refused = client.get(ME_URL)
    assert refused.status_code == 401
    assert_error_shape(refused.json(), "AUTHENTICATION_FAILED")
    assert client.delete(TOKEN_URL).status_code == 401


def test_delete_revokes_only_the_callers_token(client, world):
    seller_token = login(client, world.seller)["token"]
    viewer_token = login(client, world.viewer)["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {seller_token}")
    assert client.delete(TOKEN_URL).status_code == 204
    assert Token.objects.filter(key=viewer_token).exists()


@pytest.mark.parametrize("authorization", [None, "Token not-a-real-token"])
def test_delete_without_a_valid_token_is_401(client, world, authorization):
    login(client, world.seller)
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.delete(TOKEN_URL)
    assert response.status_code == 401
    assert_error_shape(response.json(), response.json()["code"])
    assert Token.objects.filter(user=world.seller).exists()


def test_delete_with_a_browser_session_is_401_there_being_no_token_to_revoke(client, world):
    client.force_login(world.seller)
    assert client.delete(TOKEN_URL).status_code == 401


def test_schema_documents_expiry_and_revocation(client, db):
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    operations = schema["paths"][TOKEN_URL]
    ok = operations["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    assert set(schema["components"]["schemas"][ok]["properties"]) == {"token", "expires_at"}
    assert {"204", "401"} <= set(operations["delete"]["responses"])
    assert operations["delete"]["security"] == [{"tokenAuth": []}]
