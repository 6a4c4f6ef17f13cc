"""The plan's step graph (DESIGN §3.3 depends_on) as SVG: a left-to-right layered layout of our own, drawn on the
server for the admin plan page and GET /api/v1/plans/{id}/graph/.

Our own layout rather than Graphviz: a plan has a handful of steps, the layers are the longest path to each step,
and drawing them needs no system package or subprocess per request. The markup follows Graphviz's SVG where a
reader would look for it: each step a `<g class="node …">` holding a `<title>`, each dependency a
`<g class="edge">` whose `<title>` is "from->to" (step numbers, as the step table counts them).
"""
import re
from dataclasses import dataclass
from uuid import UUID
from xml.sax.saxutils import escape, quoteattr

from plans.models import FINISHED_STEP_STATUSES, PlanStatus, PlanStep, RevenuePlan, StepStatus

NODE_WIDTH, NODE_HEIGHT = 220, 58
LAYER_GAP, ROW_GAP, MARGIN, HEADER = 70, 22, 16, 28

# One class per live status, so a stylesheet (ours below, or a UI's) colours the nodes.
_STATUS_CLASS = {
    StepStatus.PENDING: "pending",
    StepStatus.PENDING_APPROVAL: "pending-approval",
    StepStatus.AUTO_EXECUTED: "auto-executed",
    StepStatus.DONE: "done",
    StepStatus.SKIPPED: "skipped",
    StepStatus.FAILED: "failed",
}
# Scoped to the graph: inline in the admin page, an SVG's <style> applies to the whole document.
_STYLE = """
.step-graph .node rect { fill: #fff; stroke: #79818a; stroke-width: 1.5; }
.step-graph .node.ready rect { stroke: #2f6fb0; stroke-width: 2.5; }
.step-graph .node.pending-approval rect { fill: #fff6df; stroke: #c48a00; }
.step-graph .node.done rect, .step-graph .node.auto-executed rect { fill: #e7f5ea; stroke: #2e8540; }
.step-graph .node.skipped rect { fill: #f1f1f1; stroke: #a0a0a0; stroke-dasharray: 4 3; }
.step-graph .node.failed rect { fill: #fde8e8; stroke: #c62828; }
.step-graph .node text { font: 12px sans-serif; fill: #222; }
.step-graph .node text.status { font-size: 11px; fill: #555; }
.step-graph .edge path { fill: none; stroke: #79818a; stroke-width: 1.3; }
.step-graph .edge polygon { fill: #79818a; }
.step-graph .edge.unmet path { stroke-dasharray: 5 3; }
.step-graph text.header { font: 13px sans-serif; fill: #222; }
"""

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Node:
    step: PlanStep
    layer: int
    row: int
    live_status: str  # the step's status, or READY: PENDING with every dependency finished in an ACTIVE plan
    detail: str

    @property
    def x(self) -> int:
        return MARGIN + self.layer * (NODE_WIDTH + LAYER_GAP)

    @property
    def y(self) -> int:
        return MARGIN + HEADER + self.row * (NODE_HEIGHT + ROW_GAP)


def layout(plan: RevenuePlan, steps: list[PlanStep]) -> tuple[list[Node], list[tuple[Node, Node]]]:
    """Each step in the layer after its latest dependency (roots in layer 0), ordered in its layer by where its
    dependencies sit, then by sequence; and the edges between steps the plan holds (an unknown id draws none)."""
    steps = sorted(steps, key=lambda step: step.sequence)
    by_id = {_id_key(step.step_id): step for step in steps}
    needs, never_met = {}, {}
    for step in steps:
        keys = list(dict.fromkeys(_id_key(other) for other in _dependency_ids(step)))
        needs[step.step_id] = [by_id[key] for key in keys if key in by_id and by_id[key] is not step]
        # A step the plan does not hold, or the step itself, never finishes first: the engine never runs it.
        never_met[step.step_id] = (["unknown step"] * any(key not in by_id for key in keys)
                                   + ["itself"] * any(by_id.get(key) is step for key in keys))
    layers = _layers(steps, needs)
    rows: dict = {}
    for depth in range(max(layers.values(), default=-1) + 1):
        in_layer = [step for step in steps if layers[step.step_id] == depth]
        in_layer.sort(key=lambda step: (_mean(rows[other.step_id] for other in needs[step.step_id]
                                              if other.step_id in rows), step.sequence))
        rows.update((step.step_id, row) for row, step in enumerate(in_layer))
    finished = {step.step_id for step in steps if step.status in FINISHED_STEP_STATUSES}
    nodes = {step.step_id: Node(step, layers[step.step_id], rows[step.step_id],
                                *_live(plan, step, needs[step.step_id], never_met[step.step_id], finished))
             for step in steps}
    edges = [(nodes[other.step_id], nodes[step.step_id]) for step in steps for other in needs[step.step_id]
             if layers[other.step_id] < layers[step.step_id]]
    return list(nodes.values()), edges


def _layers(steps: list[PlanStep], needs: dict) -> dict:
    """step_id -> layer, in topological order (no recursion, whatever the plan's size). A cycle, which the policy
    refuses at creation, is broken at its lowest sequence: that step's unplaced dependencies count as none."""
    layers: dict = {}
    waiting = {step.step_id: len(needs[step.step_id]) for step in steps}
    dependents: dict = {step.step_id: [] for step in steps}
    for step in steps:
        for other in needs[step.step_id]:
            dependents[other.step_id].append(step)
    ready = [step for step in steps if not waiting[step.step_id]]
    while len(layers) < len(steps):
        if not ready:  # a cycle: break it at the unplaced step of lowest sequence (`steps` is in sequence order)
            ready = [next(step for step in steps if step.step_id not in layers)]
        step = ready.pop(0)
        if step.step_id in layers:
            continue
        layers[step.step_id] = 1 + max((layers[other.step_id] for other in needs[step.step_id]
                                        if other.step_id in layers), default=-1)
        for later in dependents[step.step_id]:
            waiting[later.step_id] -= 1
            if waiting[later.step_id] == 0:
                ready.append(later)
    return layers


def _dependency_ids(step: PlanStep) -> list:
    # The schema makes depends_on a list of step ids; a row written around it may hold anything else.
    return step.depends_on if isinstance(step.depends_on, list) else []


def _id_key(value) -> str:
    """A step id as the engine compares it (UUID(str(value))), so the graph waits where the engine waits."""
    try:
        return str(UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return f"?{value!r}"


def step_graph_svg(plan: RevenuePlan, steps: list[PlanStep]) -> str:
    """The SVG document; every text in it is escaped (action types and errors come from tenants' data)."""
    nodes, edges = layout(plan, steps)
    width = MARGIN * 2 + max((node.x - MARGIN + NODE_WIDTH for node in nodes), default=NODE_WIDTH)
    height = MARGIN * 2 + HEADER + max((node.y - MARGIN - HEADER + NODE_HEIGHT for node in nodes), default=0)
    header = f"Plan {plan.pk} · {plan.plan_status} · {len(nodes)} step{'s' if len(nodes) != 1 else ''}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="step-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(header)}>',
        f"<title>{escape(header)}</title>",
        f"<style>{_STYLE}</style>",
        f'<text class="header" x="{MARGIN}" y="{MARGIN + 14}">{escape(header)}</text>',
    ]
    for start, end in edges:
        parts.append(_edge(start, end))
    for node in nodes:
        parts.append(_node(node))
    parts.append("</svg>")
    return "\n".join(parts)


def _live(plan: RevenuePlan, step: PlanStep, needs: list[PlanStep], never_met: list[str],
          finished: set) -> tuple[str, str]:
    if step.status != StepStatus.PENDING:
        return step.status, (step.skip_reason or step.last_error or f"attempts: {step.attempts}")[:60]
    waiting_for = [str(other.sequence + 1) for other in needs if other.step_id not in finished]
    if waiting_for or never_met:
        return step.status, "after " + ", ".join(waiting_for + never_met)
    if plan.plan_status != PlanStatus.ACTIVE:
        return step.status, f"plan {plan.plan_status.lower()}"
    if step.next_attempt_at:
        return "READY", f"retry at {step.next_attempt_at:%Y-%m-%d %H:%M} UTC"
    return "READY", f"runs next · attempts: {step.attempts}"


def _node(node: Node) -> str:
    step = node.step
    css = _STATUS_CLASS.get(step.status, "pending") + (" ready" if node.live_status == "READY" else "")
    label = f"{step.sequence + 1}. {step.action_type}"
    return (
        f'<g class="node {css}" id={quoteattr(f"step-{step.step_id}")} data-step={quoteattr(str(step.step_id))} '
        f"data-status={quoteattr(node.live_status)}>"
        f"<title>{escape(_clip(label, 200))}</title>"
        f'<rect x="{node.x}" y="{node.y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6"/>'
        f'<text x="{node.x + 10}" y="{node.y + 22}">{escape(_clip(label, 30))}</text>'
        f'<text class="status" x="{node.x + 10}" y="{node.y + 42}">'
        f"{escape(_clip(f'{node.live_status} · {node.detail}', 34))}</text></g>"
    )


def _edge(start: Node, end: Node) -> str:
    x1, y1 = start.x + NODE_WIDTH, start.y + NODE_HEIGHT // 2
    x2, y2 = end.x - 8, end.y + NODE_HEIGHT // 2
    bend = (x2 - x1) // 2
    unmet = "" if start.step.status in FINISHED_STEP_STATUSES else " unmet"
    title = f"{start.step.sequence + 1}->{end.step.sequence + 1}"
    return (
        f'<g class="edge{unmet}" data-from={quoteattr(str(start.step.step_id))} '
        f"data-to={quoteattr(str(end.step.step_id))}><title>{escape(title)}</title>"
        f'<path d="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"/>'
        f'<polygon points="{x2},{y2 - 5} {x2 + 8},{y2} {x2},{y2 + 5}"/></g>'
    )


def _clip(text: str, length: int) -> str:
    """At most `length` characters, without those XML 1.0 forbids (a connector's error may carry terminal codes)."""
    text = _NOT_XML.sub("", text)
    return text if len(text) <= length else text[: length - 1] + "…"


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
