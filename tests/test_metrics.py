"""/metrics: Prometheus text, behind a bearer token when REVPLAN_METRICS_TOKEN is set."""
import pytest
from django.test import Client

METRICS_URL = "/metrics"
TOKEN = "metrics-token-for-this-test"


@pytest.fixture
def metrics_token(settings):
    settings.REVPLAN_METRICS_TOKEN = TOKEN


def test_without_a_configured_token_metrics_are_open(settings):
    settings.REVPLAN_METRICS_TOKEN = ""
    response = Client().get(METRICS_URL)
    assert response.status_code == 200
    assert b"revplan_ticks_total" in response.content


@pytest.mark.usefixtures("metrics_token")
def test_the_configured_bearer_token_gets_the_metrics():
    response = Client().get(METRICS_URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"revplan_ticks_total" in response.content


@pytest.mark.usefixtures("metrics_token")
@pytest.mark.parametrize("authorization", [
    None,
    "Bearer wrong",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    f"Token {TOKEN}",
    "Bearer",
    "Bearer \u00e9t\u00e9",  # not ASCII: refused, not a 500
])
def test_metrics_without_the_configured_token_are_refused(authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = Client().get(METRICS_URL, **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    body = response.json()
    assert set(body) == {"code", "detail", "reasons"}
    assert body["code"] == "NOT_AUTHENTICATED"
    assert b"revplan_" not in response.content
