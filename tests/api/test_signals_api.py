"""Signals API: POST records a signal once per (source, external_id) — 201, then 200 with the same one — for
a SELLER and up or an integration token; GET lists an account's signals, newest first, for any member."""
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from plans.models import AccountSignal, EventType, IntegrationToken, PlanLedgerEntry
from plans.services.signals import MAX_PAYLOAD_BYTES
from tests.api.helpers import assert_error, client_for
from tests.factories import AccountFactory

SIGNAL_FIELDS = {"signal_id", "account_id", "signal_type", "observed_at", "source", "external_id", "payload",
                 "recorded_by", "created_at"}
COMMITTED = {"signal_type": "RENEWAL_COMMITTED", "source": "crm", "external_id": "opp-4711-committed",
             "payload": {"opportunity": "opp-4711"}}


def signals_url(account) -> str:
    return f"/api/v1/accounts/{account.id}/signals/"


def token_client(world) -> tuple[APIClient, IntegrationToken]:
    """A client whose requests carry an integration token (request.auth), as its authentication class sets."""
    token = IntegrationToken.objects.create(tenant=world.tenant, name=f"crm-{uuid.uuid4()}", key_prefix="rvp_x",
                                           key_hash=uuid.uuid4().hex * 2, created_by=world.admin,
                                           created_at=timezone.now())
    client = APIClient()
    client.force_authenticate(user=None, token=token)
    return client, token


def test_a_seller_posts_a_signal_once_then_gets_the_same_one_back(world):
    api = client_for(world.seller)

    first = api.post(signals_url(world.account), COMMITTED, format="json")
    again = api.post(signals_url(world.account), {**COMMITTED, "payload": {"opportunity": "changed"}}, format="json")

    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    body = first.json()
    assert set(body) == SIGNAL_FIELDS
    assert again.json() == body
    assert (body["account_id"], body["signal_type"], body["source"], body["external_id"], body["payload"],
            body["recorded_by"]) == (str(world.account.id), "RENEWAL_COMMITTED", "crm", "opp-4711-committed",
                                     {"opportunity": "opp-4711"}, f"user:{world.seller.pk}")
    assert AccountSignal.objects.count() == 1
    (entry,) = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.SIGNAL_RECORDED)
    assert entry.actor == f"user:{world.seller.pk}"


def test_observed_at_defaults_to_now_and_may_be_given(world):
    api = client_for(world.approver)
    before = timezone.now()
    now_body = api.post(signals_url(world.account), {"signal_type": "SUPPORT_RISK", "source": "zendesk"},
                        format="json").json()
    observed = "2026-01-02T03:04:05Z"
    given = api.post(signals_url(world.account), {"signal_type": "CHAMPION_LEFT", "source": "crm",
                                                  "observed_at": observed}, format="json").json()
    signal = AccountSignal.objects.get(pk=now_body["signal_id"])
    assert signal.observed_at >= before
    assert given["observed_at"].startswith("2026-01-02T03:04:05")


def test_a_viewer_may_not_post_and_another_tenant_sees_no_account(world, other_world):
    assert_error(client_for(world.viewer).post(signals_url(world.account), COMMITTED, format="json"), 403,
                 "NOT_ALLOWED")
    assert_error(client_for(other_world.admin).post(signals_url(world.account), COMMITTED, format="json"), 404,
                 "NOT_FOUND")
    assert_error(client_for(world.seller).post(f"/api/v1/accounts/{uuid.uuid4()}/signals/", COMMITTED,
                                               format="json"), 404, "NOT_FOUND")
    assert_error(APIClient().post(signals_url(world.account), COMMITTED, format="json"), 401, "NOT_AUTHENTICATED")
    assert not AccountSignal.objects.exists()


@pytest.mark.parametrize(("body", "code"), [
    ({**COMMITTED, "signal_type": "RENEWAL_MAYBE"}, "UNKNOWN_SIGNAL_TYPE"),
    ({**COMMITTED, "signal_type": "ACTION_EXECUTED"}, "SIGNAL_TYPE_RESERVED"),
    ({**COMMITTED, "signal_type": "ACTION_FAILED"}, "SIGNAL_TYPE_RESERVED"),
    ({**COMMITTED, "signal_type": "IDEA_EDITED"}, "SIGNAL_TYPE_RESERVED"),
    ({**COMMITTED, "source": "system"}, "INVALID_SOURCE"),
    ({**COMMITTED, "payload": {"blob": "x" * MAX_PAYLOAD_BYTES}}, "PAYLOAD_TOO_LARGE"),
    ({**COMMITTED, "payload": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}, "PAYLOAD_TOO_DEEP"),
    ({**COMMITTED, "observed_at": (timezone.now() + timedelta(days=1)).isoformat()}, "OBSERVED_IN_FUTURE"),
    ({**COMMITTED, "payload": {"note": "a\u0000b"}}, "PAYLOAD_NOT_JSON"),
    ({**COMMITTED, "payload": {"a\u0000": 1}}, "PAYLOAD_NOT_JSON"),
    ({**COMMITTED, "external_id": "a\u0000b"}, "VALIDATION_ERROR"),
    ({**COMMITTED, "payload": [1, 2]}, "VALIDATION_ERROR"),
    ({**COMMITTED, "status": "x"}, "VALIDATION_ERROR"),
    ({"source": "crm"}, "VALIDATION_ERROR"),
    ({**COMMITTED, "source": "c r m"}, "VALIDATION_ERROR"),
])
def test_a_wrong_signal_is_refused_with_a_clear_code_and_nothing_written(world, body, code):
    assert_error(client_for(world.seller).post(signals_url(world.account), body, format="json"), 400, code)
    assert not AccountSignal.objects.exists()
    assert not PlanLedgerEntry.objects.filter(tenant=world.tenant).exists()


@pytest.mark.parametrize("payload", ['{"a": "\\ud800"}', '{"a": 1e400}', '{"a": NaN}'])
def test_a_payload_postgresql_cannot_store_is_refused(world, payload):
    raw = f'{{"signal_type": "SUPPORT_RISK", "source": "crm", "payload": {payload}}}'
    response = client_for(world.seller).post(signals_url(world.account), raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert not AccountSignal.objects.exists()


def test_an_external_id_reused_for_another_account_is_a_conflict(world):
    api = client_for(world.seller)
    api.post(signals_url(world.account), COMMITTED, format="json")
    elsewhere = AccountFactory(tenant=world.tenant, owner=world.seller)
    assert_error(api.post(signals_url(elsewhere), COMMITTED, format="json"), 409, "EXTERNAL_ID_REUSED")


def test_any_member_lists_an_accounts_signals_newest_first_paginated(world, other_world):
    api = client_for(world.seller)
    now = timezone.now()
    for days_ago, external_id in ((3, "a"), (1, "b"), (2, "c")):
        api.post(signals_url(world.account), {**COMMITTED, "signal_type": "SUPPORT_RISK", "external_id": external_id,
                                              "observed_at": (now - timedelta(days=days_ago)).isoformat()},
                 format="json")
    AccountSignal.objects.create(account=AccountFactory(tenant=world.tenant), signal_type="SUPPORT_RISK",
                                 observed_at=now)

    body = client_for(world.viewer).get(signals_url(world.account), {"page_size": 2}).json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3
    assert [row["external_id"] for row in body["results"]] == ["b", "c"]
    assert body["next"]
    only = client_for(world.viewer).get(signals_url(world.account), {"signal_type": "RENEWAL_COMMITTED"}).json()
    assert only["count"] == 0
    assert_error(client_for(other_world.viewer).get(signals_url(world.account)), 404, "NOT_FOUND")
    assert_error(client_for(world.viewer).get(signals_url(world.account), {"signal_type": "NOPE"}), 400,
                 "VALIDATION_ERROR")


def test_an_integration_token_posts_to_its_own_tenant_only_and_may_not_read(world, other_world):
    api, token = token_client(world)

    created = api.post(signals_url(world.account), COMMITTED, format="json")

    assert created.status_code == 201, created.content
    assert created.json()["recorded_by"] == f"integration:{token.pk}"
    (entry,) = PlanLedgerEntry.objects.filter(tenant=world.tenant, event_type=EventType.SIGNAL_RECORDED)
    assert entry.actor == f"integration:{token.pk}"
    assert api.post(signals_url(world.account), COMMITTED, format="json").status_code == 200
    assert_error(api.post(signals_url(other_world.account), COMMITTED, format="json"), 404, "NOT_FOUND")
    assert_error(api.get(signals_url(world.account)), 403, "NOT_ALLOWED")
    assert_error(api.post(signals_url(world.account), {**COMMITTED, "signal_type": "ACTION_EXECUTED",
                                                       "external_id": "x"}, format="json"), 400,
                 "SIGNAL_TYPE_RESERVED")


def test_the_schema_documents_both_operations_and_their_errors(db):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operations = schema["paths"]["/api/v1/accounts/{account_id}/signals/"]
    assert {"200", "201", "400", "401", "403", "404", "409", "413", "429"} <= set(operations["post"]["responses"])
    assert {"200", "400", "401", "403", "404", "429"} <= set(operations["get"]["responses"])
    body = operations["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][body]["required"]) == {"signal_type", "source"}
    for status_code in ("400", "403", "404", "409"):
        assert operations["post"]["responses"][status_code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}


@pytest.mark.parametrize("source", ["System", "SYSTEM"])
def test_revplans_own_source_is_refused_whatever_its_case(world, source):
    response = client_for(world.seller).post(signals_url(world.account), {**COMMITTED, "source": source},
                                             format="json")
    assert_error(response, 400, "INVALID_SOURCE")
    assert not AccountSignal.objects.exists()


@pytest.mark.parametrize("depth", [6, 450, 5_000, 100_000])
def test_a_deeply_nested_payload_is_a_400_not_a_500(world, depth):
    payload = "[" * depth + "]" * depth
    body = '{"signal_type": "SUPPORT_RISK", "source": "crm", "payload": {"a": ' + payload + "}}"
    response = client_for(world.seller).post(signals_url(world.account), body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] in {"PAYLOAD_TOO_DEEP", "MALFORMED_REQUEST"}
    assert not AccountSignal.objects.exists()
