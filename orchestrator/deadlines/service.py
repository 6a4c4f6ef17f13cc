"""The deadline job (beat, every REVPLAN_DEADLINES_SECONDS): each waiting item's next stage, once.

Stages, in order, at most one per item and run: REMINDED when the item is due soon (the people it waits
on), ESCALATED once it is overdue (they and the tenant's admins), MISSED at its final deadline (the plan
type's rule, rules.FinalRule, applied through plans.services; not sooner than
REVPLAN_DEADLINE_FINAL_NOTICE_SECONDS after the escalation, so nobody loses a plan without a warning).
"Once" is a DeadlineNotice row per (item, stage), inserted with ON CONFLICT DO NOTHING: a second run, or
two beats at once, find the row and do nothing.

Cost: reading the items is items.waiting_items' four queries; reminders and escalations cost a few
queries per tenant (the notices in one INSERT, one ledger entry in the tenant chain listing the items,
one mail per recipient), whatever the number of items; a final rule is a move of one plan through the
services (a few queries each), at most REVPLAN_DEADLINE_FINAL_BATCH per run.
"""
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from orchestrator.deadlines import mail, metrics
from orchestrator.deadlines.items import WaitingItem, paused_wait, waiting_items
from orchestrator.deadlines.models import DeadlineNotice, DeadlineStage
from orchestrator.deadlines.rules import FinalRule, rule_for
from plans import ledger, services
from plans.errors import DomainError
from plans.inbox import InboxKind
from plans.locking import lock_account_then_plan
from plans.models import EventType, PauseKind, PlanStatus, PlanStep, RevenuePlan, StepStatus

logger = logging.getLogger(__name__)

COMPONENT = "deadlines"
ACTOR = ledger.system_actor(COMPONENT)
DEADLINE_MISSED = "DEADLINE_MISSED"

_NOTICES = DeadlineNotice._meta.db_table
_NOTICE_EVENTS = {DeadlineStage.REMINDED: EventType.DEADLINE_REMINDED,
                  DeadlineStage.ESCALATED: EventType.DEADLINE_ESCALATED}


@dataclass
class RunResult:
    waiting: int = 0  # items read (those that may be due soon)
    overdue: int = 0
    done: dict[str, int] = field(default_factory=lambda: {stage: 0 for stage in DeadlineStage})
    mails: int = 0


def next_stage(item: WaitingItem, noticed: dict[str, datetime], *, now: datetime) -> DeadlineStage | None:
    """The stage the item reaches now, given the stages it had ({stage: noticed_at}); None: nothing yet."""
    if DeadlineStage.REMINDED not in noticed:
        return DeadlineStage.REMINDED if now >= item.deadlines.remind_at else None
    if DeadlineStage.ESCALATED not in noticed:
        return DeadlineStage.ESCALATED if now >= item.deadlines.due_at else None
    if DeadlineStage.MISSED not in noticed:
        notice = timedelta(seconds=settings.REVPLAN_DEADLINE_FINAL_NOTICE_SECONDS)
        if now >= item.deadlines.final_at and now >= noticed[DeadlineStage.ESCALATED] + notice:
            return DeadlineStage.MISSED
    return None


def deadlines_run(*, now: datetime | None = None) -> RunResult:
    """One run of the job over every tenant; `now` injectable so tests move the clock instead of sleeping."""
    now = now or timezone.now()
    items = waiting_items(now=now)
    noticed: dict[str, dict[str, datetime]] = defaultdict(dict)
    for item_key, stage, noticed_at in _notices_of(items):
        noticed[item_key][stage] = noticed_at
    result = RunResult(waiting=len(items), overdue=sum(item.overdue(now) for item in items))
    due: dict[DeadlineStage, list[WaitingItem]] = defaultdict(list)
    for item in items:
        stage = next_stage(item, noticed[item.key], now=now)
        if stage is not None:
            due[stage].append(item)
    members = mail.members_of({item.tenant_id for batch in due.values() for item in batch})
    for stage in (DeadlineStage.REMINDED, DeadlineStage.ESCALATED):
        by_tenant: dict = defaultdict(list)
        for item in due[stage]:
            by_tenant[item.tenant_id].append(item)
        for tenant_id, tenant_items in by_tenant.items():
            try:
                done, mails = _notify(tenant_id, stage, tenant_items, members[tenant_id], now=now)
            except Exception:
                # One tenant's failure must not cost the others their notices; its own come next run.
                logger.exception("deadline notices failed", extra={"tenant_id": str(tenant_id), "stage": stage})
                continue
            result.done[stage] += done
            result.mails += mails
    for item in due[DeadlineStage.MISSED][: settings.REVPLAN_DEADLINE_FINAL_BATCH]:
        try:
            mails = _apply_final(item, members[item.tenant_id], now=now)
        except Exception:
            logger.exception("deadline rule failed", extra={"plan_id": str(item.plan_id),
                                                            "step_id": str(item.step_id or "")})
            continue
        if mails is not None:
            result.done[DeadlineStage.MISSED] += 1
            result.mails += mails
    metrics.OVERDUE_ITEMS.set(result.overdue)
    for stage, count in result.done.items():
        metrics.DEADLINE_STAGES.labels(stage.lower()).inc(count)
    if any(result.done.values()):
        logger.info("deadlines", extra={"waiting": result.waiting, "overdue": result.overdue,
                                        **{stage.lower(): count for stage, count in result.done.items()}})
    return result


def _notices_of(items: list[WaitingItem]) -> list[tuple[str, str, datetime]]:
    """(item_key, stage, noticed_at) of the items' notices: one array parameter, not one per key (at 10,000
    keys the driver's splicing of an IN list costs more than the query)."""
    if not items:
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT item_key, stage, noticed_at FROM {_NOTICES} WHERE item_key = ANY(%s)",
                       [[item.key for item in items]])
        return cursor.fetchall()


def _link_notices(notice_ids, *, ledger_entry_id: int, outcome: str | None = None) -> None:
    """The notices' ledger entry (and a final rule's outcome), one array parameter for the ids."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_NOTICES} SET ledger_entry_id = %s, outcome = COALESCE(%s, outcome) "
                       "WHERE id = ANY(%s)", [ledger_entry_id, outcome, list(notice_ids)])


# The notices of one stage for many items in one statement; the rows another run inserted first are not
# returned (and so not ledgered or mailed twice).
_INSERT_NOTICES = f"""
INSERT INTO {_NOTICES}
    (tenant_id, plan_id, item_key, kind, step_id, stage, waiting_since, due_at, final_at, noticed_at, recipient_ids,
     outcome)
SELECT tenant_id, plan_id, item_key, kind, step_id, %(stage)s, waiting_since, due_at, final_at, %(now)s,
       recipient_ids::jsonb, ''
FROM unnest(%(tenant_ids)s::uuid[], %(plan_ids)s::uuid[], %(item_keys)s::text[], %(kinds)s::text[],
            %(step_ids)s::uuid[], %(waiting_since)s::timestamptz[], %(due_at)s::timestamptz[],
            %(final_at)s::timestamptz[], %(recipient_ids)s::text[])
     AS item(tenant_id, plan_id, item_key, kind, step_id, waiting_since, due_at, final_at, recipient_ids)
ON CONFLICT (item_key, stage) DO NOTHING
RETURNING id, item_key
"""


def _insert_notices(stage: DeadlineStage, rows: list[tuple[WaitingItem, list[int]]], *, now: datetime
                    ) -> dict[str, int]:
    """item_key -> notice id, for the notices this call inserted."""
    params = {
        "stage": stage.value, "now": now,
        "tenant_ids": [item.tenant_id for item, _ in rows], "plan_ids": [item.plan_id for item, _ in rows],
        "item_keys": [item.key for item, _ in rows], "kinds": [item.kind.value for item, _ in rows],
        "step_ids": [item.step_id for item, _ in rows],
        "waiting_since": [item.waiting_since for item, _ in rows],
        "due_at": [item.deadlines.due_at for item, _ in rows],
        "final_at": [item.deadlines.final_at for item, _ in rows],
        "recipient_ids": [json.dumps(ids) for _, ids in rows],
    }
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_NOTICES, params)
        return {item_key: notice_id for notice_id, item_key in cursor.fetchall()}


def _notify(tenant_id, stage: DeadlineStage, items: list[WaitingItem], members: list[mail.Member], *,
            now: datetime) -> tuple[int, int]:
    """Remind or escalate `items` of one tenant: the notices, one ledger entry listing them, the mails after
    commit. Returns (items noticed, mails sent)."""
    people = {item.key: mail.recipients(item, members, stage) for item in items}
    sent: list[int] = []
    with transaction.atomic():
        inserted = _insert_notices(stage, [(item, [m.user_id for m in people[item.key]]) for item in items], now=now)
        if not inserted:
            return 0, 0
        noticed = [item for item in items if item.key in inserted]
        entry = ledger.deadlines_noticed(
            tenant_id, event_type=_NOTICE_EVENTS[stage], actor=ACTOR, items=[item.as_dict() for item in noticed],
            recipient_ids=sorted({member.user_id for item in noticed for member in people[item.key]}))
        _link_notices(inserted.values(), ledger_entry_id=entry.id)
        batch = [(item, people[item.key], "") for item in noticed]
        transaction.on_commit(lambda: sent.append(mail.send(stage, batch, now=now)))
    return len(noticed), sum(sent)


# --- the final rule ----------------------------------------------------------------------------------


def _still_waiting(item: WaitingItem, plan: RevenuePlan) -> bool:
    """Under the plan's lock: is it the same wait the job read (nobody acted since)?"""
    if item.kind == InboxKind.DRAFT_APPROVAL:
        return plan.plan_status == PlanStatus.DRAFT and plan.updated_at == item.waiting_since
    if item.kind == InboxKind.STEP_APPROVAL:
        return plan.plan_status == PlanStatus.ACTIVE and PlanStep.objects.filter(
            plan=plan, step_id=item.step_id, status=StepStatus.PENDING_APPROVAL).exists()
    if plan.plan_status != PlanStatus.PAUSED:
        return False
    layers = [(layer.kind, layer.set_at) for layer in services.open_layers(plan)]
    wait = paused_wait(layers, plan.paused_at or plan.updated_at)
    return wait is not None and wait[0] == item.kind and wait[1] == item.waiting_since


def _final_move(item: WaitingItem, rule: FinalRule) -> str:
    """Apply `rule` through plans.services (the state-move rules stay there); returns what was done."""
    explanation = (f"The wait ({item.kind}) passed its final deadline {item.deadlines.final_at:%Y-%m-%d %H:%M} UTC "
                   "with nobody acting on it.")
    facts = item.as_dict()
    if rule == FinalRule.SKIP_OR_PAUSE and item.step_id and not item.step_required:
        services.step_skip_by_policy(plan_id=item.plan_id, step_id=item.step_id, component=COMPONENT,
                                     reason=f"{explanation} It is optional, so it was skipped.")
        return f"The optional step {item.what} was skipped; the plan goes on without it."
    if rule in (FinalRule.SKIP_OR_PAUSE, FinalRule.PAUSE):
        services.plan_pause_by_policy(
            plan_id=item.plan_id, component=COMPONENT, kind=PauseKind.POLICY, scope="deadline",
            reason_code=DEADLINE_MISSED, facts=facts,
            explanation=f"{explanation} The plan is paused until a person decides (resume, revise or abort).")
        return "The plan was paused with a POLICY layer; a person's resume lifts it."
    services.plan_abort_by_policy(plan_id=item.plan_id, component=COMPONENT, reason_code=DEADLINE_MISSED,
                                  explanation=f"{explanation} The plan was aborted.", facts=facts)
    return "The plan was aborted (DEADLINE_MISSED)."


def _apply_final(item: WaitingItem, members: list[mail.Member], *, now: datetime) -> int | None:
    """The final rule for one item, in one transaction with its notice and DEADLINE_MISSED entry; None when
    the wait ended meanwhile or another run got there first. Returns the mails sent."""
    rule = rule_for(item.plan_type, item.kind).final_rule
    people = mail.recipients(item, members, DeadlineStage.MISSED)
    sent: list[int] = []
    with transaction.atomic():
        try:
            # The account first, then the plan: the order of every move (plans.locking).
            plan = lock_account_then_plan(item.plan_id)
        except DomainError:
            return None
        if not _still_waiting(item, plan):
            return None
        inserted = _insert_notices(DeadlineStage.MISSED, [(item, [m.user_id for m in people])], now=now)
        if not inserted:
            return None
        try:
            with transaction.atomic():
                outcome = _final_move(item, rule)
        except DomainError as error:
            # The services refused (the table said no): nothing moved; the notice and the entry say why.
            outcome = f"The rule {rule} could not be applied: {error.code} ({error.detail})"
            logger.warning("deadline rule refused", extra={"plan_id": str(item.plan_id), "code": error.code})
        entry = ledger.deadline_missed(plan, actor=ACTOR, item=item.as_dict(), rule=rule.value, outcome=outcome)
        _link_notices(inserted.values(), ledger_entry_id=entry.id, outcome=outcome[:300])
        batch = [(item, people, outcome)]
        transaction.on_commit(lambda: sent.append(mail.send(DeadlineStage.MISSED, batch, now=now)))
    logger.info("deadline missed", extra={"plan_id": str(item.plan_id), "step_id": str(item.step_id or ""),
                                          "kind": item.kind, "rule": rule, "outcome": outcome})
    return sum(sent)

