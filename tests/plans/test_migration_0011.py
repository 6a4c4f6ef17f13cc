"""plans/0011: signals written before it take their account's tenant, source 'system', no external id."""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from plans.models import AccountSignal

BEFORE = ("plans", "0010_integration_token")
AFTER = ("plans", "0011_signal_source_and_external_id")


@pytest.mark.django_db(transaction=True)
def test_existing_signals_are_backfilled_with_their_accounts_tenant():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        # given: a signal as the code before 0011 wrote it
        executor.migrate([BEFORE])
        old = executor.loader.project_state([BEFORE]).apps
        tenant = old.get_model("plans", "Tenant").objects.create(slug="before-0011", name="Before")
        account = old.get_model("plans", "Account").objects.create(tenant=tenant, name="A", external_id="a-1")
        old.get_model("plans", "AccountSignal").objects.create(account=account, signal_type="SUPPORT_RISK",
                                                               observed_at=timezone.now(), payload={"p": 1})
        # when
        executor = MigrationExecutor(connection)
        executor.migrate([AFTER])
        # then
        signal = AccountSignal.objects.get()
        assert (signal.tenant_id, signal.source, signal.external_id, signal.recorded_by, signal.payload) == (
            tenant.id, "system", "", "system", {"p": 1})
    finally:
        MigrationExecutor(connection).migrate(latest)
