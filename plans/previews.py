"""What a step will do outside, described before it runs — so a person approves what will be sent.

The connectors that know how to describe an effect live in orchestrator/, which plans/ never imports;
orchestrator registers its describer when its app is ready (OrchestratorConfig.ready), and the plan
page, the inbox and the API ask through `previews_for`. Without a describer (plans/ on its own) steps
have no preview, which every caller shows as "no preview".

A preview is a JSON-serialisable dict: {"connector": name, "summary": a sentence a seller understands,
"body": what would be sent (the event, the request body, the record's text), ...}; or, when the step
cannot be described (its connector is not configured, say), {"connector": name or "", "summary": why,
"unavailable": true}. Describing never sends anything and never writes a row.
"""
from collections.abc import Callable, Iterable
from uuid import UUID

from plans.models import PlanStep

Describer = Callable[[list[PlanStep]], dict[UUID, dict]]
_describer: Describer | None = None


def register(describer: Describer) -> None:
    """Set the one describer (called once, by the orchestrator app)."""
    global _describer
    _describer = describer


def previews_for(steps: Iterable[PlanStep]) -> dict[UUID, dict]:
    """step_id -> preview for the given steps (their plans, accounts and tenants loaded by the caller,
    in a constant number of queries however many steps)."""
    steps = list(steps)
    if _describer is None or not steps:
        return {}
    return _describer(steps)
