"""The optional LLM proposer (DESIGN §3.8): an OpenAI-compatible chat endpoint suggests the steps.

The answer is bounded by a pydantic schema (sent as the response format, and checked again here),
then sanitised: steps whose action type the plan type does not allow are dropped; nothing left →
the proposal is rejected. The model only ever drafts; what it says is never executed as is.
"""
import json
import logging

import httpx
from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plans.errors import DomainError, PolicyRefused
from plans.plan_types import get_plan_type_config
from plans.schemas import MAX_STEPS

logger = logging.getLogger(__name__)

PROPOSAL_REJECTED = "PROPOSAL_REJECTED"
PROPOSER_UNAVAILABLE = "PROPOSER_UNAVAILABLE"


class ProposerUnavailable(DomainError):
    """The LLM endpoint timed out, failed or answered something that is not the schema (503)."""

    http_status = 503


class LLMStep(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action_type: str = Field(max_length=64)


class LLMPlan(BaseModel):
    """What the model must answer: an objective and steps in the order they should run."""

    model_config = ConfigDict(extra="ignore")

    objective: str = Field(min_length=1, max_length=500)
    steps: list[LLMStep] = Field(min_length=1, max_length=MAX_STEPS)


SYSTEM_PROMPT = (
    "You draft B2B revenue plans for a person to review. Answer only with JSON matching the schema: "
    "an objective (one sentence) and the steps in the order they should run. Use only these action "
    "types: {allowed}. Suggest a step only when the account's facts call for it."
)


def suggest(proposal_input: dict, *, plan_type: str) -> tuple[str, list[str], list[str]]:
    """(objective, allowed action types in order, dropped action types) or a clear error."""
    config = get_plan_type_config(plan_type)
    allowed = config.allowed_action_types if config else ()
    options = settings.REVPLAN_LLM
    body = {
        "model": options["model"],
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT.format(allowed=", ".join(allowed))},
            {"role": "user", "content": json.dumps(proposal_input, sort_keys=True, default=str)},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "plan_proposal", "strict": True, "schema": LLMPlan.model_json_schema()},
        },
    }
    headers = {"Authorization": f"Bearer {options['api_key']}"} if options["api_key"] else {}
    url = options["base_url"].rstrip("/") + "/chat/completions"
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=options["timeout_seconds"])
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
        plan = LLMPlan.model_validate_json(content)
    except httpx.TimeoutException as error:
        raise ProposerUnavailable(
            PROPOSER_UNAVAILABLE, f"The LLM proposer did not answer within {options['timeout_seconds']} s."
        ) from error
    except httpx.HTTPError as error:
        raise ProposerUnavailable(PROPOSER_UNAVAILABLE, f"The LLM proposer failed: {error}.") from error
    except (ValueError, KeyError, IndexError, TypeError, ValidationError) as error:
        # ValidationError covers malformed JSON too; nothing the model said is kept.
        raise ProposerUnavailable(
            PROPOSER_UNAVAILABLE, f"The LLM proposer's answer is not a plan proposal: {str(error)[:300]}"
        ) from error
    kept = list(dict.fromkeys(step.action_type for step in plan.steps if step.action_type in allowed))
    dropped = [step.action_type for step in plan.steps if step.action_type not in allowed]
    if dropped:
        logger.warning("LLM proposer suggested disallowed steps; dropped", extra={"dropped": dropped[:20]})
    if not kept:
        raise PolicyRefused(PROPOSAL_REJECTED, f"None of the suggested steps is allowed for {plan_type}.")
    return plan.objective, kept, dropped
