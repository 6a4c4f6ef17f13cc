"""The internal connector: draft tasks, notes and renewal briefs written to revplan's own database."""
from django.utils import timezone

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
        # get_or_create on the unique (tenant, effect_key): a retry or a duplicate finds the first record.
        record, _ = InternalRecord.objects.get_or_create(
            tenant_id=intent.tenant_id,
            effect_key=intent.effect_key,
            defaults={"account_id": intent.account_id, "kind": kind, "title": title[:300], "body": body},
        )
        return ExternalRef(self.name, {"record_id": str(record.pk), "kind": record.kind})

    def compensate(self, intent: ActionIntent, ref: ExternalRef) -> None:
        InternalRecord.objects.filter(tenant_id=intent.tenant_id, effect_key=intent.effect_key).delete()
