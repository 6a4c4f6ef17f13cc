"""Writers for a plan's chain: a pause layer set or lifted (DESIGN §3.2: every layer change is an entry)."""
from plans.ledger.chain import append
from plans.models import EventType, PauseLayer, PlanLedgerEntry, RevenuePlan


def _layer_data(layer: PauseLayer) -> dict:
    return {"layer": {"kind": layer.kind, "scope": layer.scope, "reason_code": layer.reason_code,
                      "set_by": layer.set_by, "set_at": layer.set_at.isoformat(), "evidence": layer.evidence}}


def pause_layer_added(plan: RevenuePlan, *, layer: PauseLayer) -> PlanLedgerEntry:
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PAUSE_LAYER_ADDED,
        actor=layer.set_by,
        reason_code=layer.reason_code,
        explanation=f"Held by {layer.kind}: {layer.explanation}",
        data=_layer_data(layer),
    )


def pause_layer_lifted(plan: RevenuePlan, *, layer: PauseLayer, why: str, open_after: list[str]) -> PlanLedgerEntry:
    """`open_after`: the kinds still holding the plan once this layer is gone."""
    left = f" Still held by {', '.join(open_after)}." if open_after else " No layer is left."
    return append(
        tenant_id=plan.tenant_id,
        plan_id=plan.id,
        event_type=EventType.PAUSE_LAYER_LIFTED,
        actor=layer.lifted_by,
        reason_code=layer.kind,
        explanation=f"{layer.kind} lifted: {why.rstrip('.')}.{left}",
        data={**_layer_data(layer), "why": why, "open_after": open_after},
    )
