"""Token endpoint and the §7 error shape on authentication failures and bad input."""
import json

import pytest
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
