"""plans.graph: the step graph's layers, edges and live statuses, read back from the SVG it writes."""
import itertools
import xml.etree.ElementTree as ET

from plans.graph import layout, step_graph_svg
from plans.models import PlanStatus, PlanStep, StepStatus
from tests.factories import make_plan

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str):
    """(nodes by step id: (class, data-status, title), edges as (from, to) step ids) from the document."""
    root = ET.fromstring(svg)
    nodes = {g.get("data-step"): (g.get("class"), g.get("data-status"), g.find(f"{SVG}title").text)
             for g in root.iter(f"{SVG}g") if g.get("class", "").split()[0] == "node"}
    edges = [(g.get("data-from"), g.get("data-to")) for g in root.iter(f"{SVG}g")
             if g.get("class", "").split()[0] == "edge"]
    return nodes, edges


def diamond(world, *, status=PlanStatus.ACTIVE, statuses=(StepStatus.DONE, StepStatus.PENDING, StepStatus.PENDING,
                                                          StepStatus.PENDING)) -> tuple:
    """1 -> (2, 3) -> 4, steps in the given statuses."""
    plan = make_plan(account=world.account, status=status, action_types=("PREP_RENEWAL_BRIEF",) * 4)
    steps = list(plan.steps.order_by("sequence"))
    first, left, right, last = steps
    left.depends_on = right.depends_on = [str(first.step_id)]
    last.depends_on = [str(left.step_id), str(right.step_id)]
    for step, step_status in zip(steps, statuses, strict=True):
        step.status = step_status
    PlanStep.objects.bulk_update(steps, ["depends_on", "status"])
    return plan, steps


def test_a_node_per_step_an_edge_per_dependency_in_layers_left_to_right(world):
    plan, (first, left, right, last) = diamond(world)
    nodes, edges = layout(plan, [first, left, right, last])
    layer = {node.step.step_id: node.layer for node in nodes}
    assert [layer[s.step_id] for s in (first, left, right, last)] == [0, 1, 1, 2]
    x = {node.step.step_id: node.x for node in nodes}
    assert x[first.step_id] < x[left.step_id] == x[right.step_id] < x[last.step_id]
    assert {(a.step.step_id, b.step.step_id) for a, b in edges} == {
        (first.step_id, left.step_id), (first.step_id, right.step_id),
        (left.step_id, last.step_id), (right.step_id, last.step_id)}

    svg_nodes, svg_edges = parse(step_graph_svg(plan, [first, left, right, last]))
    assert set(svg_nodes) == {str(s.step_id) for s in (first, left, right, last)}
    assert len(svg_edges) == 4
    assert (str(left.step_id), str(last.step_id)) in svg_edges


def test_each_node_carries_its_live_status(world):
    plan, (first, left, right, last) = diamond(
        world, statuses=(StepStatus.DONE, StepStatus.PENDING_APPROVAL, StepStatus.PENDING, StepStatus.PENDING))
    nodes, _ = parse(step_graph_svg(plan, [first, left, right, last]))
    assert nodes[str(first.step_id)][:2] == ("node done", "DONE")
    assert nodes[str(left.step_id)][:2] == ("node pending-approval", "PENDING_APPROVAL")
    # Its one dependency finished and the plan is ACTIVE: it runs next.
    assert nodes[str(right.step_id)][:2] == ("node pending ready", "READY")
    # Still waiting for 2 and 3.
    assert nodes[str(last.step_id)][:2] == ("node pending", "PENDING")
    assert nodes[str(first.step_id)][2] == "1. PREP_RENEWAL_BRIEF"


def test_a_paused_plan_has_no_ready_step(world):
    plan, steps = diamond(world, status=PlanStatus.PAUSED)
    nodes, _ = parse(step_graph_svg(plan, steps))
    assert {status for _, status, _ in nodes.values()} == {"DONE", "PENDING"}


def test_tenant_text_is_escaped_and_an_unknown_or_cyclic_dependency_draws_nothing(world):
    plan = make_plan(account=world.account, action_types=('<script>alert("x")</script>', "PREP_RENEWAL_BRIEF"))
    first, second = plan.steps.order_by("sequence")
    first.depends_on = [str(second.step_id)]  # a cycle the policy would refuse: drawn, not looped over
    second.depends_on = [str(first.step_id), "00000000-0000-0000-0000-000000000000"]
    svg = step_graph_svg(plan, [first, second])
    assert "<script>" not in svg
    nodes, edges = parse(svg)  # well-formed XML
    assert nodes[str(first.step_id)][2] == '1. <script>alert("x")</script>'
    assert len(nodes) == 2
    assert len(edges) == 1


def test_a_plan_without_steps_is_an_empty_graph(world):
    plan = make_plan(account=world.account, action_types=())
    nodes, edges = parse(step_graph_svg(plan, []))
    assert nodes == {}
    assert edges == []


def test_a_dependency_is_matched_as_the_engine_matches_it_and_an_unknown_one_is_never_met(world):
    plan = make_plan(account=world.account, status=PlanStatus.ACTIVE, action_types=("PREP_RENEWAL_BRIEF",) * 3)
    first, second, third = plan.steps.order_by("sequence")
    second.depends_on = [str(first.step_id).upper()]  # the engine reads it as UUID(...): the same step
    third.depends_on = ["00000000-0000-0000-0000-000000000000"]  # no such step: the engine never runs it
    first.depends_on = [str(first.step_id)]  # nor a step that waits for itself
    nodes, edges = parse(step_graph_svg(plan, [first, second, third]))
    assert edges == [(str(first.step_id), str(second.step_id))]
    assert nodes[str(first.step_id)][1] == "PENDING"
    assert nodes[str(second.step_id)][1] == "PENDING"
    assert nodes[str(third.step_id)][1] == "PENDING"


def test_control_characters_and_markup_in_a_steps_error_still_make_a_well_formed_document(world):
    plan = make_plan(account=world.account, status=PlanStatus.PAUSED, action_types=("PREP_RENEWAL_BRIEF\x0b",),
                     step_status=StepStatus.FAILED)
    step = plan.steps.get()
    step.last_error = "boom\x1b[31m\x07 <b>&</b>"
    svg = step_graph_svg(plan, [step])
    assert "<b>" not in svg
    nodes, _ = parse(svg)  # ElementTree refuses what XML 1.0 forbids
    assert nodes[str(step.step_id)][:2] == ("node failed", "FAILED")


def test_odd_rows_render_a_long_reversed_chain_without_recursion_and_a_non_list_depends_on(world):
    plan = make_plan(account=world.account, action_types=())
    steps = [PlanStep(plan=plan, sequence=index, action_type="PREP_RENEWAL_BRIEF") for index in range(1500)]
    for step, after in itertools.pairwise(steps):
        step.depends_on = [str(after.step_id)]  # each step waits for the next one: 1,500 layers deep
    steps[-1].depends_on = None
    nodes, edges = layout(plan, steps)
    assert max(node.layer for node in nodes) == 1499
    assert len(edges) == 1499
