"""orchestrator/execution/connectors/internal.py: a brief's latest signals, one account's read by its index, are
the rows the page-of-previews read (a window over several accounts) gives for it."""
from datetime import timedelta

from django.utils import timezone

from orchestrator.execution.connectors.internal import RECENT_SIGNALS_IN_BRIEF, recent_signals
from tests.factories import AccountFactory, SignalFactory


def test_one_accounts_latest_signals_are_the_same_as_in_a_read_of_several(world):
    other = AccountFactory(tenant=world.tenant, owner=world.seller)
    now = timezone.now()
    for account in (world.account, other):
        for minutes in (5, 1, 9, 1, 3, 7, 2, 11, 4, 8, 6, 12):  # two at the same time: the later row first
            SignalFactory(account=account, tenant_id=world.tenant.id, observed_at=now - timedelta(minutes=minutes))
    alone = recent_signals([world.account.id])[world.account.id]
    together = recent_signals([world.account.id, other.id])
    assert len(alone) == RECENT_SIGNALS_IN_BRIEF
    assert [signal.id for signal in alone] == [signal.id for signal in together[world.account.id]]
    assert [signal.observed_at for signal in alone] == sorted((s.observed_at for s in alone), reverse=True)
    assert {signal.account_id for signal in together[other.id]} == {other.id}
