"""What a step will do outside, described before it runs — so a person approves what will be sent.

The connectors that know how to describe an effect live in orchestrator/, which plans/ never imports;
orchestrator registers its describer when its app is ready (OrchestratorConfig.ready), and the plan
page, the inbox and the API ask through `previews_for`. Without a describer (plans/ on its own) steps
have no preview, which every caller shows as "no preview".

Only steps that have yet to run are described (PREVIEWED_STATUSES: PENDING, PENDING_APPROVAL, and FAILED,
whose preview is what a person's retry would send; of a plan that has not ended); a finished step's
effect is in its execution and the ledger. A preview is a JSON-serialisable dict,
always with the same keys:

- `connector`: "internal", "calendar" or "crm" (the tenant's route, else the catalogue's); "" when no
  connector carries the action type out;
- `summary`: a sentence a seller understands — what will be sent, where, and to whom;
- `target`: where it goes, in a few words ("calendar revplan-acme-corp", "POST https://crm…/tasks",
  "a brief on the account, in revplan"); "" when unavailable;
- `body`: exactly what the connector would send, built by the code that sends it — the CRM request's
  JSON body; the draft event's uid, summary, start, end (ISO 8601), description, status, calendar and
  calendar_url; the internal record's kind, title and body. null when unavailable;
- `unavailable`: true when the step cannot be described (its connector is not configured, a parameter
  the connector would refuse): `summary` then says why and names the setting to fill in, never a value.

Time-dependent parts are as of now: a meeting without a `start` parameter is put two weekdays after
the step runs, and a renewal brief lists the account's latest signals when it is written.
Describing never sends anything, never writes a row and never shows a secret (an API key, a password).
"""
from collections.abc import Callable, Iterable
from uuid import UUID

from plans.lifecycle import TERMINAL
from plans.models import FINISHED_STEP_STATUSES, PlanStep, StepStatus

Describer = Callable[[list[PlanStep]], dict[UUID, dict]]
_describer: Describer | None = None

# Every status but the finished ones (FINISHED_STEP_STATUSES): a FAILED step runs again if a person retries it.
PREVIEWED_STATUSES = frozenset(set(StepStatus) - FINISHED_STEP_STATUSES)


def register(describer: Describer) -> None:
    """Set the one describer (called once, by the orchestrator app)."""
    global _describer
    _describer = describer


def _of_an_ended_plan(step: PlanStep) -> bool:
    """Known without a query: the step's plan is loaded (a prefetch sets it) and has ended. The describer
    leaves out the other steps of ended plans once it has read their plans."""
    return PlanStep.plan.is_cached(step) and step.plan.plan_status in TERMINAL


def previews_for(steps: Iterable[PlanStep]) -> dict[UUID, dict]:
    """step_id -> preview for those of the given steps that have yet to run (PREVIEWED_STATUSES, of a
    plan that has not ended), in a constant number of queries however many steps; the others have none."""
    steps = [step for step in steps if step.status in PREVIEWED_STATUSES and not _of_an_ended_plan(step)]
    if _describer is None or not steps:
        return {}
    return _describer(steps)
