"""Undoing what an action did (DESIGN §5: compensate where reversible): one intent, or every finished step
of a plan a tenant admin aborts.

The connector is called outside any transaction: a slow CRM or calendar holds no plan lock. The result
is recorded afterwards under the plan's row lock, conditionally, so two undos at once write one
ACTION_COMPENSATED. A connector that cannot undo is a ledgered refusal and a line in the report, never
an error that stops the other undos; what is stored and answered is the connector's classified
sentence ("the CRM answered HTTP 503 (server error) while deleting the task"), never the raw answer.
"""
import logging
from dataclasses import dataclass
from uuid import UUID

from django.db import DatabaseError, transaction
from django.utils import timezone

from orchestrator.execution.connectors import ExternalRef, build_connector
from orchestrator.execution.connectors.base import ConnectorError
from orchestrator.execution.models import ActionIntent, ConnectorName, IntentStatus
from orchestrator.execution.selectors import intent_for_user
from plans import ledger, services
from plans.authority import Verb
from plans.errors import Conflict, DomainError, NotFound
from plans.locking import lock_plan
from plans.models import RevenuePlan
from plans.selectors import visible_to

logger = logging.getLogger(__name__)

INTENT_NOT_COMPENSABLE = "INTENT_NOT_COMPENSABLE"
COMPENSATION_FAILED = ledger.COMPENSATION_FAILED


class CompensationFailed(Conflict):
    """The connector could not undo the effect (ledgered); for callers that want an error, not an Undo."""

# What each connector's compensate needs to find the effect it made. All three can undo theirs: the
# internal one deletes its record, the calendar its draft meeting, the CRM its task (HTTP DELETE). An
# intent made by a connector not listed here, or without the id its connector needs, cannot be undone.
UNDO_NEEDS: dict[str, tuple[str, ...]] = {
    ConnectorName.INTERNAL: (),
    ConnectorName.CALENDAR: ("event_uid",),
    ConnectorName.CRM: ("task_id",),
}


@dataclass(frozen=True)
class Undo:
    intent: ActionIntent
    undone: bool
    reason: str = ""

    def as_item(self) -> dict:
        item = {"intent_id": self.intent.id, "action_type": self.intent.action_type, "step_id": self.intent.step_id}
        return item if self.undone else {**item, "reason": self.reason}


def not_undoable_because(intent: ActionIntent) -> str:
    """'' when the intent's effect can be undone now, else why not (a sentence ending)."""
    if intent.status != IntentStatus.SUCCEEDED:
        return f"it is {intent.status}: only a SUCCEEDED action made an effect to undo"
    if intent.compensated_at:
        return "it was undone already"
    needs = UNDO_NEEDS.get(intent.connector)
    if needs is None:
        return f"the {intent.connector or 'unknown'} connector cannot undo what it did"
    missing = [name for name in needs if not intent.external_ids.get(name)]
    if missing:
        return f"the connector did not report the {', '.join(missing)} of what it made, so it cannot find it"
    return ""


def compensate(intent: ActionIntent, *, actor: str, reason: str = "", clock=timezone.now) -> Undo:
    """Undo one intent's effect, for a caller that checked authority. Conflict when it cannot be undone at all
    (not SUCCEEDED, undone already, irreversible); Undo(undone=False) when the connector failed to."""
    why_not = not_undoable_because(intent)
    if why_not:
        raise Conflict(INTENT_NOT_COMPENSABLE, f"This action cannot be undone: {why_not}.")
    log = {"intent_id": str(intent.id), "plan_id": str(intent.plan_id or ""), "action_type": intent.action_type}
    failure = ""
    try:
        connector = build_connector(intent)
        if connector.name != intent.connector:
            failure = (f"the action type now goes to the {connector.name} connector, not the {intent.connector} one "
                       "that made it")
        else:
            connector.compensate(intent, ExternalRef(intent.connector, intent.external_ids))
    except ConnectorError as error:
        logger.warning("compensation failed", extra={**log, "error": str(error), "http_status": error.http_status,
                                                     "detail": error.detail, "error_class": type(error).__name__})
        failure = str(error)
    except DatabaseError:
        raise
    except Exception as error:
        logger.exception("connector raised unexpectedly while undoing", extra=log)
        failure = f"The {intent.connector} connector failed unexpectedly while undoing it ({type(error).__name__})."
    with transaction.atomic():
        if intent.plan_id:
            lock_plan(intent.plan_id)  # the plan's chain, which its row lock serialises
        if failure:
            ledger.action_compensation_failed(intent, actor=actor, failure=failure)
            return Undo(intent, False, failure.rstrip("."))
        updated = ActionIntent.objects.filter(pk=intent.pk, compensated_at__isnull=True).update(
            compensated_at=clock())
        intent.refresh_from_db()
        if updated:
            ledger.action_compensated(intent, actor=actor, reason=reason)
    return Undo(intent, True)


def intent_compensate(*, intent_id: UUID, user, reason: str = "") -> Undo:
    """A tenant admin undoes a SUCCEEDED, reversible action (404 another tenant's, 403 another role, 409 one
    that cannot be undone)."""
    intent = intent_for_user(user, intent_id)
    services.require_may_act_on_action(Verb.COMPENSATE_ACTION, user=user, tenant_id=intent.tenant_id)
    return compensate(intent, actor=ledger.user_actor(user), reason=(reason or "").strip())


@dataclass(frozen=True)
class AbortReport:
    plan: RevenuePlan
    compensated: list[dict]
    not_undone: list[dict]
    cancelled: list[dict]


def plan_abort_compensating(*, plan_id: UUID, user, reason: str, expected_version: int | None = None) -> AbortReport:
    """A tenant admin aborts a plan and undoes the effects of its finished steps, newest first (a saga's
    order). The abort commits first (plans.services.plan_abort: the reason required, the lifecycle checked);
    its still PENDING attempts are cancelled, so none can start; then each SUCCEEDED, not yet undone intent
    is undone and ledgered. One that cannot be undone — irreversible, a connector failure, an attempt still
    running — is reported with why, and the others still go."""
    # Through the one visibility rule: another tenant's plan is the same 404 as one that does not exist.
    plan = visible_to(RevenuePlan.objects.filter(pk=plan_id), user).first()
    if plan is None:
        raise NotFound("NOT_FOUND", "The plan does not exist.")
    # Before the abort: a caller who may abort but not undo gets a 403 and the plan stays as it was.
    services.require_may_act_on_action(Verb.COMPENSATE_ACTION, user=user, tenant_id=plan.tenant_id, plan=plan)
    plan = services.plan_abort(plan_id=plan_id, user=user, reason=reason, expected_version=expected_version)
    actor = ledger.user_actor(user)
    cancelled = []
    for intent in ActionIntent.objects.filter(plan_id=plan_id, status=IntentStatus.PENDING):
        try:
            _cancel_after_abort(intent, actor=actor)
        except DomainError:
            continue  # a worker claimed it meanwhile: it is reported below if it is still running
        cancelled.append({"intent_id": intent.id, "action_type": intent.action_type, "step_id": intent.step_id})
    compensated, not_undone = [], []
    undo_reason = f"the plan was aborted: {reason.strip()}"
    intents = (ActionIntent.objects.select_related("account__owner", "tenant")
               .filter(plan_id=plan_id, status__in=[IntentStatus.SUCCEEDED, IntentStatus.EXECUTING])
               .order_by("-finished_at", "-created_at"))
    for intent in intents:
        if intent.compensated_at:
            continue  # undone before the abort
        if intent.status == IntentStatus.EXECUTING:
            still_running = ("it was still running when the plan was aborted; once it finished, undo it with "
                             f"POST /api/v1/actions/{intent.id}/compensate/")
            not_undone.append(Undo(intent, False, still_running).as_item())
            continue
        why_not = not_undoable_because(intent)
        if why_not:
            not_undone.append(Undo(intent, False, why_not).as_item())
            continue
        undo = compensate(intent, actor=actor, reason=undo_reason)
        (compensated if undo.undone else not_undone).append(undo.as_item())
    logger.info("plan aborted with compensation", extra={"plan_id": str(plan_id), "compensated": len(compensated),
                                                          "not_undone": len(not_undone)})
    return AbortReport(plan=plan, compensated=compensated, not_undone=not_undone, cancelled=cancelled)


def _cancel_after_abort(intent: ActionIntent, *, actor: str) -> None:
    # The engine's own cancel of a finished plan's attempt (no pause layer: the plan is ABORTED).
    from orchestrator.execution.service import ExecutionService

    ExecutionService().cancel(intent.id, actor=actor)
