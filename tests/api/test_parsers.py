"""The API's JSON parser: a body nested deeper than MAX_REQUEST_DEPTH is a §7 400 on every JSON endpoint,
login included (Python's json raises RecursionError a few thousand levels down: that was a 500)."""
import pytest
from rest_framework.test import APIClient

from revplan.api.parsers import MAX_REQUEST_DEPTH
from tests.api.helpers import assert_error, client_for


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_REQUEST_DEPTH + 1, 1_100, 100_000])
def test_a_deep_body_at_login_is_a_400(depth):
    body = '{"username": ' + nested(depth) + ', "password": "x"}'
    response = APIClient().post("/api/v1/auth/token/", body, content_type="application/json")
    assert "nests deeper" in assert_error(response, 400, "MALFORMED_REQUEST")["detail"]


def test_a_body_within_the_bound_is_parsed_and_judged_by_its_serializer():
    body = '{"username": ' + nested(MAX_REQUEST_DEPTH - 1) + ', "password": "x"}'
    response = APIClient().post("/api/v1/auth/token/", body, content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")  # parsed: a list is not a username


def test_a_deep_body_on_a_view_that_names_its_parser_is_a_400(world):
    body = '{"name": "crm", "expires_at": ' + nested(5_000) + "}"
    response = client_for(world.admin).post("/api/v1/integration-tokens/", body, content_type="application/json")
    assert_error(response, 400, "MALFORMED_REQUEST")
