"""The internal connector: draft tasks, notes and renewal briefs written to revplan's own database."""
from django.db import connection
from django.utils import timezone
from psycopg.types.json import Jsonb

from orchestrator.execution.connectors.base import ExternalRef, PermanentError
from orchestrator.execution.models import ActionIntent, InternalRecord, InternalRecordKind

RECENT_SIGNALS_IN_BRIEF = 10

KIND_BY_ACTION_TYPE = {
    "PREP_RENEWAL_BRIEF": InternalRecordKind.BRIEF,
    "ESCALATE_SUPPORT_RISK": InternalRecordKind.TASK,
}

TITLES = {
    "PREP_RENEWAL_BRIEF": "Renewal brief: {account}",
    "ESCALATE_SUPPORT_RISK": "Support lead: review the support risk on {account} before its renewal",
}


def renewal_brief(intent: ActionIntent) -> dict:
    """What a seller needs before the renewal call, built from the account's own data and signals."""
    account = intent.account
    today = timezone.localdate()
    signals = account.signals.order_by("-observed_at")[:RECENT_SIGNALS_IN_BRIEF]
    return {
        "account": {"name": account.name, "external_id": account.external_id},
        "renewal_date": account.renewal_date.isoformat() if account.renewal_date else None,
        "days_to_renewal": (account.renewal_date - today).days if account.renewal_date else None,
        "owner": account.owner.get_username() if account.owner else None,
        "posture": account.posture,
        "recent_signals": [
            {
                "signal_type": signal.signal_type,
                "observed_at": signal.observed_at.isoformat(),
                "payload": signal.payload,
            }
            for signal in signals
        ],
    }


# One statement whether or not the record exists: a retry or a duplicate finds the first record by the
# unique (tenant, effect_key). The SELECT sees the table as it was before the INSERT, so it returns
# a row only when the INSERT did nothing — unless the conflicting row was committed by a concurrent
# insert after this statement began (a stale worker racing its takeover): then neither part returns
# one, and a second read, with a fresh snapshot, finds it.
_INSERT_ONCE = """
WITH inserted AS (
    INSERT INTO orchestrator_internalrecord (tenant_id, account_id, kind, effect_key, title, body, created_at)
    VALUES (%(tenant_id)s, %(account_id)s, %(kind)s, %(effect_key)s, %(title)s, %(body)s, %(now)s)
    ON CONFLICT (tenant_id, effect_key) DO NOTHING
    RETURNING id, kind
)
SELECT id, kind FROM inserted
UNION ALL
SELECT id, kind FROM orchestrator_internalrecord WHERE tenant_id = %(tenant_id)s AND effect_key = %(effect_key)s
"""


def _insert_once(intent: ActionIntent, *, kind: str, title: str, body: dict) -> tuple[int, str]:
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_ONCE, {
            "tenant_id": intent.tenant_id, "account_id": intent.account_id, "kind": kind,
            "effect_key": intent.effect_key, "title": title, "body": Jsonb(body), "now": timezone.now(),
        })
        row = cursor.fetchone()
    if row is None:
        row = InternalRecord.objects.values_list("id", "kind").get(tenant_id=intent.tenant_id,
                                                                   effect_key=intent.effect_key)
    return row


class InternalConnector:
    name = "internal"

    def __init__(self, settings: dict | None = None):
        self.settings = settings or {}

    def validate(self, intent: ActionIntent) -> None:
        if intent.account.tenant_id != intent.tenant_id:
            raise PermanentError("The intent's account belongs to another tenant.")

    def execute(self, intent: ActionIntent) -> ExternalRef:
        kind = KIND_BY_ACTION_TYPE.get(intent.action_type, InternalRecordKind.NOTE)
        title = TITLES.get(intent.action_type, "{action}: {account}").format(
            account=intent.account.name, action=intent.action_type
        )
        body = renewal_brief(intent) if kind == InternalRecordKind.BRIEF else {"parameters": intent.parameters}
        record_id, record_kind = _insert_once(intent, kind=kind, title=title[:300], body=body)
        return ExternalRef(self.name, {"record_id": str(record_id), "kind": record_kind})

    def compensate(self, intent: ActionIntent, ref: ExternalRef) -> None:
        InternalRecord.objects.filter(tenant_id=intent.tenant_id, effect_key=intent.effect_key).delete()
