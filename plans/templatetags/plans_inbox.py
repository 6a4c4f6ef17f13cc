"""{% needs_your_input %}: the approvers' inbox, its most urgent few, at the top of the admin index."""
from django import template

from plans.admin_inbox import index_summary

register = template.Library()


@register.inclusion_tag("admin/plans/inbox_summary.html", takes_context=True)
def needs_your_input(context) -> dict:
    return index_summary(context["request"])
