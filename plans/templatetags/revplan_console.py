"""Template filters of the approvers' console: a preview's body for a <pre> block, and what changed since
an approval in words (step ids as "step 2 (PREP_RENEWAL_BRIEF)", values as plans.wording says them)."""
import json

from django import template

from plans.wording import words

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """A JSON value indented for a <pre> block (what a step preview's body will send), keys in order."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _step_labels(steps) -> dict[str, str]:
    """step id -> "step 2 (PREP_RENEWAL_BRIEF)", from the page's steps (or its (step, actions) rows)."""
    labels = {}
    for item in steps or ():
        step = item[0] if isinstance(item, tuple | list) else item
        labels[str(step.step_id)] = f"step {step.sequence + 1} ({step.action_type})"
    return labels


@register.filter
def field_in_words(field, steps=None) -> str:
    """`steps.<id>.parameters` -> "step 1 (PREP_RENEWAL_BRIEF): parameters"; `step_order` -> "step order"."""
    parts = str(field).split(".")
    if parts[0] == "steps" and len(parts) >= 2:
        step = _step_labels(steps).get(parts[1], "a removed step")
        return f"{step}: {' '.join(parts[2:]).replace('_', ' ')}" if len(parts) > 2 else step
    return str(field).replace("_", " ")


@register.filter
def value_in_words(value, steps=None) -> str:
    """A changed value as words, the page's step ids named by number and action ("—" for none)."""
    if value is None:
        return "—"
    labels = _step_labels(steps)

    def named(item):
        if isinstance(item, str):
            return labels.get(item, item)
        if isinstance(item, list):
            return [named(element) for element in item]
        if isinstance(item, dict):
            return {key: named(element) for key, element in item.items()}
        return item

    return words(named(value))
