"""Template filters of the approvers' console."""
import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """A JSON value indented for a <pre> block (what a step preview's body will send), keys in order."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
