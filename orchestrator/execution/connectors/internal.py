"""The internal connector: draft tasks, notes and renewal briefs written to revplan's own database."""
from uuid import uuid4

from django.db import connection, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone
from psycopg.types.json import Jsonb

from orchestrator.execution.connectors.base import ExternalRef, PermanentError, described, not_describable
from orchestrator.execution.models import ActionIntent, InternalRecord, InternalRecordKind
from plans.models import AccountSignal
from revplan.compiled import CompiledQuery

RECENT_SIGNALS_IN_BRIEF = 10

KIND_BY_ACTION_TYPE = {
    "PREP_RENEWAL_BRIEF": InternalRecordKind.BRIEF,
    "ESCALATE_SUPPORT_RISK": InternalRecordKind.TASK,
}

TITLES = {
    "PREP_RENEWAL_BRIEF": "Renewal brief: {account}",
    "ESCALATE_SUPPORT_RISK": "Support lead: review the support risk on {account} before its renewal",
}


def _recent_signals_query(account_ids: list):
    latest = Window(RowNumber(), partition_by=F("account_id"), order_by=[F("observed_at").desc(), F("id").desc()])
    return (AccountSignal.objects.filter(account_id__in=account_ids).annotate(rank=latest)
            .filter(rank__lte=RECENT_SIGNALS_IN_BRIEF).order_by("account_id", "rank"))


# One account's (every brief an execution writes), the same rows in the same order: its latest few by the
# (account, -observed_at) index, where the window reads and sorts every signal the account has. Compiled once.
_ONE_ACCOUNTS_SIGNALS = CompiledQuery(
    lambda account_id: AccountSignal.objects.filter(account_id=account_id)
    .order_by("-observed_at", "-id")[:RECENT_SIGNALS_IN_BRIEF],
    account_id=uuid4(),
)


def recent_signals(account_ids) -> dict:
    """account id -> its RECENT_SIGNALS_IN_BRIEF latest signals, newest first, in one read for any
    number of accounts (the brief of one execution, or a page of previews)."""
    signals: dict = {account_id: [] for account_id in account_ids}
    rows = (_ONE_ACCOUNTS_SIGNALS.all(account_id=next(iter(signals))) if len(signals) == 1
            else _recent_signals_query(list(signals)))
    for signal in rows:
        signals[signal.account_id].append(signal)
    return signals


def renewal_brief(intent: ActionIntent, signals: list) -> dict:
    """What a seller needs before the renewal call, built from the account's own data and `signals`
    (its latest, from recent_signals)."""
    account = intent.account
    today = timezone.localdate()
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


SUMMARIES = {
    InternalRecordKind.BRIEF: 'Writes the renewal brief "{title}" into revplan: the account\'s renewal date, owner, '
                              "posture and its {signals} latest signals. Nothing leaves revplan.",
    InternalRecordKind.TASK: 'Writes the task "{title}" into revplan, for the support lead. Nothing leaves revplan.',
    InternalRecordKind.NOTE: 'Writes the note "{title}" into revplan. Nothing leaves revplan.',
}


class InternalConnector:
    name = "internal"

    def __init__(self, settings: dict | None = None, *, signals_by_account: dict | None = None):
        """`signals_by_account`: recent_signals of the accounts, read once for a page of previews;
        without it the brief reads its account's own."""
        self.settings = settings or {}
        self.signals_by_account = signals_by_account

    def _record(self, intent: ActionIntent) -> tuple[str, str, dict]:
        """The record execute writes: (kind, title, body). The preview shows exactly this."""
        kind = KIND_BY_ACTION_TYPE.get(intent.action_type, InternalRecordKind.NOTE)
        title = TITLES.get(intent.action_type, "{action}: {account}").format(
            account=intent.account.name, action=intent.action_type
        )
        if kind == InternalRecordKind.BRIEF:
            signals = (self.signals_by_account if self.signals_by_account is not None
                       else recent_signals([intent.account_id])).get(intent.account_id, [])
            body = renewal_brief(intent, signals)
        else:
            body = {"parameters": intent.parameters}
        return kind, title[:300], body

    def validate(self, intent: ActionIntent) -> None:
        if intent.account.tenant_id != intent.tenant_id:
            raise PermanentError("The intent's account belongs to another tenant.")

    def preview(self, intent: ActionIntent) -> dict:
        try:
            self.validate(intent)
        except PermanentError as error:
            return not_describable(self.name, error)
        kind, title, body = self._record(intent)
        summary = SUMMARIES[kind].format(title=title, signals=len(body.get("recent_signals", ())))
        return described(self.name, summary=summary, target=f"a {kind.lower()} on the account, in revplan",
                         body={"kind": kind, "title": title, "body": body})

    def execute(self, intent: ActionIntent) -> ExternalRef:
        # The brief's reads and its row in one transaction: one commit for the effect.
        with transaction.atomic():
            kind, title, body = self._record(intent)
            record_id, record_kind = _insert_once(intent, kind=kind, title=title, body=body)
        return ExternalRef(self.name, {"record_id": str(record_id), "kind": record_kind})

    def compensate(self, intent: ActionIntent, ref: ExternalRef) -> None:
        InternalRecord.objects.filter(tenant_id=intent.tenant_id, effect_key=intent.effect_key).delete()
