"""Shared helpers for API tests: an authenticated client and the §7 error-shape check."""
from rest_framework.test import APIClient


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def assert_error(response, status_code: int, code: str) -> dict:
    """The response is the DESIGN §7 error JSON with this status and code."""
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"code", "detail", "reasons"}
    assert body["code"] == code
    assert body["detail"]
    assert all(set(reason) == {"code", "detail"} for reason in body["reasons"])
    return body
