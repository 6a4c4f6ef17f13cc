"""Fixtures for the execution spine: connector configs on the shared test servers, fast retries, intents."""
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.execution.models import ActionRoute, ConnectorConfig
from orchestrator.execution.service import ExecutionService, intent_create


@pytest.fixture(autouse=True)
def fast_retries(settings):
    """Backoff in tens of milliseconds: the tests check the delays grow, not that they are long."""
    settings.REVPLAN_RETRY_BASE_SECONDS = 0.02
    settings.REVPLAN_RETRY_MAX_DELAY_SECONDS = 1.0


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def service(sleeps):
    """A real ExecutionService whose sleeps are recorded (and still slept, briefly)."""
    import time

    def recording_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    return ExecutionService(sleep=recording_sleep)


@pytest.fixture
def calendar_for(radicale):
    def configure(tenant):
        ConnectorConfig.objects.update_or_create(
            tenant=tenant, connector="calendar", defaults={"settings": {"url": radicale.url, "timeout_seconds": 5}}
        )

    return configure


@pytest.fixture
def crm_for(crm):
    def configure(tenant, **extra):
        ConnectorConfig.objects.update_or_create(
            tenant=tenant, connector="crm",
            defaults={"settings": {"base_url": crm.base_url, "api_key": "k", "timeout_seconds": 0.5, **extra}},
        )

    return configure


@pytest.fixture
def make_intent(world):
    def make(action_type="PREP_RENEWAL_BRIEF", *, account=None, expires_in=timedelta(hours=1), **fields):
        account = account or world.account
        return intent_create(
            tenant_id=account.tenant_id,
            account_id=account.id,
            action_type=action_type,
            expires_at=timezone.now() + expires_in,
            approved_by=fields.pop("approved_by", world.approver),
            **fields,
        )

    return make


@pytest.fixture
def route_to_internal():
    def route(tenant, action_type="ESCALATE_SUPPORT_RISK"):
        ActionRoute.objects.update_or_create(tenant=tenant, action_type=action_type, defaults={"connector": "internal"})

    return route
