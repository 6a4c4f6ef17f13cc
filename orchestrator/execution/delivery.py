"""A delivery's start (DESIGN §5): what ExecutionService does before an intent's first try — the kill
switches, the claim, the connector's set-up and the first try's renewal — in the caller's transaction,
so it costs one commit, not one per statement. Nothing is sent in it."""
import dataclasses
import logging
from datetime import datetime

from django.db import DatabaseError

from orchestrator.execution import leases
from orchestrator.execution.connectors import Connector, PermanentError, build_connector
from orchestrator.execution.connectors.base import ConnectorError
from orchestrator.execution.models import ActionIntent
from plans.locking import share_plan_key
from plans.plan_types import get_action_type
from plans.selectors import execution_killed_by, killed_by

# The service's logger: a connector's errors are logged under one name whichever step of a delivery met them.
logger = logging.getLogger("orchestrator.execution.service")


@dataclasses.dataclass(frozen=True)
class Begun:
    """What begin_delivery left a delivery with: a claim and its connector, ready for the first try; or
    why there is none (`blocked_by` a switch; no claim: another worker holds it or it finished;
    `abandoned`: its workers died too often; no connector: `failure`)."""

    claim: leases.Claim | None = None
    connector: Connector | None = None
    blocked_by: str = ""
    abandoned: bool = False
    failure: str = ""


def begin_delivery(intent: ActionIntent, *, now: datetime, engaged_switches: frozenset[str] | None,
                   max_deliveries: int | None) -> Begun:
    """In the caller's open transaction: the kill switches (`engaged_switches` if the caller read them,
    else read here), the claim, the connector's set-up (the tenant's routes) and the first try's renewal
    (its count and lease). A worker that dies in it leaves the intent as it found it. What ends the
    delivery before a try (a switch, a worker lost too often, a connector that cannot be set up) the
    caller writes after it commits: those writes lock the plan, and a plan is locked before its intents,
    never after (the claim holds the intent's row)."""
    blocked_by = (execution_killed_by(intent.tenant_id, intent.action_type) if engaged_switches is None
                  else killed_by(engaged_switches, intent.action_type))
    if blocked_by:
        return Begun(blocked_by=blocked_by)
    if intent.plan_id:
        # The claim and the renewal write the intent's row twice, so PostgreSQL checks its foreign keys at commit
        # (a KEY SHARE lock on the plan): taken now, before the intent's row, as a cancel or an abort that holds
        # the plan and waits for the intent expects.
        share_plan_key(intent.plan_id)
    claim = leases.claim(intent, now=now)  # on success, `intent` holds the claimed row's state
    if claim is None or (max_deliveries is not None and claim.deliveries > max_deliveries):
        return Begun(claim=claim, abandoned=claim is not None)
    connector, failure = prepare_connector(intent)
    if connector is None:
        return Begun(claim=claim, failure=failure)
    # The first try's renewal, as ExecutionService._run would make it, under the claim's row lock. Not when
    # a worker that died used up the tries (_run then records that).
    number = intent.attempts + 1
    if number <= get_action_type(intent.action_type).max_attempts and leases.renew(
            claim, attempts=number, connector=connector.name, now=now):
        claim = dataclasses.replace(claim, counted=number)
    return Begun(claim=claim, connector=connector)


def prepare_connector(intent: ActionIntent) -> tuple[Connector | None, str]:
    """The intent's connector, built and checked, or None and why it cannot carry the intent out."""
    log = log_fields(intent)
    try:
        connector = build_connector(intent)
        intent.connector = connector.name
        connector.validate(intent)
    except PermanentError as error:
        log_connector_error(error, log)
        return None, str(error)
    except DatabaseError:
        raise  # ours, not the connector's: the delivery fails and is retried
    except Exception as error:
        # A bug or a setting nothing checked: fail now, not after the lease as WORKER_LOST.
        logger.exception("connector set-up raised unexpectedly", extra=log)
        return None, unexpected(intent, error, "preparing")
    return connector, ""


def log_connector_error(error: ConnectorError, log: dict) -> None:
    """The raw text behind a classified failure, for whoever debugs it; rows only ever get str(error)."""
    logger.warning("connector error", extra={**log, "error": str(error), "http_status": error.http_status,
                                             "detail": error.detail, "error_class": type(error).__name__})


def unexpected(intent: ActionIntent, error: Exception, doing: str) -> str:
    """A stored sentence for an exception no connector classified: its type only, its text is in the log."""
    connector = f"The {intent.connector} connector" if intent.connector else "The connector"
    return f"{connector} failed unexpectedly while {doing} ({type(error).__name__}); retrying cannot help."


def log_fields(intent: ActionIntent) -> dict:
    return {"intent_id": str(intent.id), "plan_id": str(intent.plan_id or ""), "step_id": str(intent.step_id or ""),
            "attempt": intent.attempt, "action_type": intent.action_type}
