"""Pause layers as rows: which hold a plan, lifting them, and who can lift each. No plan moves here;
plans.services.pauses sets and lifts layers together with the moves they cause."""
from uuid import uuid4

from django.utils import timezone

from plans import ledger
from plans.errors import Reason
from plans.models import PauseKind, PauseLayer, RevenuePlan
from revplan.compiled import CompiledQuery

# What a person's resume lifts: their own pause, and a policy refusal (re-decided at the next attempt).
LIFTED_BY_RESUME = frozenset({PauseKind.PERSON, PauseKind.POLICY})

# Who or what lifts each layer, as a sentence ending (for refusals, `why` and blocked_by).
LIFTED_BY = {
    PauseKind.PERSON: "a person's resume (the plan owner, a plan approver or a tenant admin)",
    PauseKind.POLICY: "a person's resume; the step is decided again when it next runs",
    PauseKind.KILL_SWITCH: "a tenant admin releasing the kill switch",
    PauseKind.GLOBAL_KILL_SWITCH: "the operator turning REVPLAN_EXECUTION_DISABLED off (the next tick lifts it)",
    PauseKind.RETRY_LIMIT: "retrying the failed step, skipping it if it is optional, revising or aborting the plan",
    PauseKind.APPROVAL_STALE: "a reapproval by an approver with authority for the plan's risk",
    PauseKind.OWNER_INACTIVE: "transferring the account to an active member (then a reapproval), or a resume "
                              "once the owner is an active member again",
    PauseKind.BREAKER: "the connector's circuit breaker closing",
}


# The API verb that lifts each layer (None: nothing a person calls; the operator or the system lifts it).
LIFTED_BY_VERB = {
    PauseKind.PERSON: "resume",
    PauseKind.POLICY: "resume",
    PauseKind.KILL_SWITCH: "release_kill_switch",
    PauseKind.GLOBAL_KILL_SWITCH: None,
    PauseKind.RETRY_LIMIT: "retry_step",
    PauseKind.APPROVAL_STALE: "reapprove",
    PauseKind.OWNER_INACTIVE: "transfer_account",
    PauseKind.BREAKER: None,
}


_OPEN_LAYERS = CompiledQuery(
    lambda plan_id: PauseLayer.objects.filter(plan_id=plan_id, lifted_at__isnull=True).order_by("set_at", "id"),
    plan_id=uuid4(),
)


def open_layers(plan: RevenuePlan) -> list[PauseLayer]:
    """The layers holding the plan now, oldest first (read afresh: the writers call this under the lock)."""
    return _OPEN_LAYERS.all(plan_id=plan.pk)


def layers_lift(plan: RevenuePlan, layers: list[PauseLayer], *, actor: str, why: str) -> list[PauseLayer]:
    """Mark `layers` lifted and ledger each; returns the layers still open afterwards. No move."""
    if not layers:
        return open_layers(plan)
    now = timezone.now()
    lifted_ids = {layer.pk for layer in layers}
    remaining = [layer for layer in open_layers(plan) if layer.pk not in lifted_ids]
    for layer in layers:
        layer.lifted_at, layer.lifted_by = now, actor
        layer.save(update_fields=["lifted_at", "lifted_by"])
        ledger.pause_layer_lifted(plan, layer=layer, why=why, open_after=[left.kind for left in remaining])
    return remaining


def holding_reasons(layers: list[PauseLayer]) -> list[Reason]:
    """Each layer as a reason: what holds the plan, and who or what can lift it."""
    return [Reason(layer.kind, f"{layer.explanation.rstrip('.')}. Lifted by {LIFTED_BY[layer.kind]}.")
            for layer in layers]
