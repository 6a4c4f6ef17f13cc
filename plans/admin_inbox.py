"""The approvers' landing page in the admin, "Needs your input": the inbox (plans.inbox) as a page, each row
with its buttons going through the existing confirmation pages (plans.admin_views), ages and due times in
words, and a bulk approval of waiting steps — each step approved on its own by services.step_approve.

The admin index shows the most urgent few (the `needs_your_input` template tag) with a link here.
"""
from uuid import UUID

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from plans import admin_views, selectors, services
from plans.admin_base import released_once_rendered
from plans.authority import APPROVERS
from plans.errors import DomainError
from plans.inbox import InboxItem, InboxKind, inbox_entries, inbox_items
from plans.models import PlanStep

ITEMS_PER_PAGE = 100
# How many of the most urgent the admin index shows above the models.
INDEX_ITEMS = 5

# Each verb's button: the confirmation page it opens and its label (the plan page's own titles).
_PLAN_VERB_ACTIONS = {"approve": "approve", "reapprove": "reapprove", "resume": "resume", "abort": "abort"}
_STEP_VERB_ACTIONS = {"approve_step": "approve", "skip_step": "skip", "retry_step": "retry"}


def duration_words(seconds: int) -> str:
    """3 h, 25 min, 4 d: rounded to the unit a person reads at that size."""
    seconds = abs(seconds)
    if seconds < 60:
        return "less than a minute"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"


def age_words(item: InboxItem) -> str:
    """"waiting 3 h, due in 21 h" or "waiting 30 h, overdue by 6 h"."""
    due = (f"overdue by {duration_words(item.due_in_seconds)}" if item.overdue
           else f"due in {duration_words(item.due_in_seconds)}")
    return f"waiting {duration_words(item.age_seconds)}, {due}"


def buttons(item: InboxItem) -> list[tuple[str, str, str]]:
    """(verb, label, url) for each verb the item offers, in its order: the confirmation pages of the plan page."""
    found = []
    for verb in item.verbs:
        if verb in _PLAN_VERB_ACTIONS:
            action = _PLAN_VERB_ACTIONS[verb]
            found.append((verb, admin_views.PLAN_ACTIONS[action].title,
                          reverse("admin:plans_revenueplan_action", args=[item.plan.pk, action])))
        elif verb in _STEP_VERB_ACTIONS and item.step is not None:
            action = _STEP_VERB_ACTIONS[verb]
            found.append((verb, admin_views.STEP_ACTIONS[action].title,
                          reverse("admin:plans_revenueplan_step_action",
                                  args=[item.plan.pk, item.step.step_id, action])))
        elif verb == "transfer_account":
            found.append((verb, "Change owner", reverse("admin:plans_account_owner", args=[item.plan.account_id])))
    return found


def what_words(item: InboxItem) -> str:
    """What the person is asked for, in a few words."""
    step = f"step {item.step.sequence + 1} ({item.step.action_type})" if item.step else ""
    if item.kind == InboxKind.DRAFT_APPROVAL:
        return "Approve the plan"
    if item.kind == InboxKind.STEP_APPROVAL:
        return f"Approve {step}"
    if item.kind == InboxKind.APPROVAL_STALE:
        return "Reapprove the plan (its facts changed)"
    return f"Paused: retry or skip {step}" if step else "Paused: let it run again"


def rows(items: list[InboxItem]) -> list[dict]:
    return [{
        "item": item,
        "what": what_words(item),
        "age": age_words(item),
        "buttons": buttons(item),
        # The plan's version as shown: a plan that changed since (revised, re-approved, its step again waiting
        # with other content) is refused, as on the confirmation page — one approves what one saw.
        "bulk_value": f"{item.plan.pk}:{item.step.step_id}:{item.plan.version}"
        if item.kind == InboxKind.STEP_APPROVAL
        and "approve_step" in item.verbs else "",
        "previews": [preview for preview in item.previews if preview["preview"]],
    } for item in items]


def inbox(model_admin, request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        approve_steps(request, request.POST.getlist("step"))
        return redirect(reverse("admin:plans_revenueplan_inbox"))
    now = timezone.now()
    number = request.GET.get("p", "1")
    # The page asked for is read with the count (a page past the end, or no number, is counted on its own).
    window = ((int(number) - 1) * ITEMS_PER_PAGE, ITEMS_PER_PAGE) if number.isdigit() and 0 < int(number) < 10**6 \
        else None
    page = Paginator(inbox_entries(request.user, window=window), ITEMS_PER_PAGE).get_page(number)
    items = inbox_items(request.user, now=now, entries=list(page.object_list))
    page_rows = rows(items)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Needs your input",
        "rows": page_rows,
        "page": page,
        "bulk": any(row["bulk_value"] for row in page_rows),
    }
    return released_once_rendered(TemplateResponse(request, "admin/plans/inbox.html", context),
                                  [item.plan for item in items])


def approve_steps(request: HttpRequest, values: list[str]) -> None:
    """Approve each checked step on its own: one refusal stops none of the others, each gets its message,
    and nothing but the checked steps changes."""
    if not values:
        messages.warning(request, "No step was selected.")
        return
    for value in dict.fromkeys(values):
        try:
            plan_part, step_part, version_part = value.split(":")
            plan_id, step_id, shown_version = UUID(plan_part), UUID(step_part), int(version_part)
        except ValueError:
            messages.error(request, f"{value!r} names no step.")
            continue
        step = (selectors.visible_to(PlanStep.objects.filter(plan_id=plan_id, step_id=step_id), request.user,
                                     tenant_field="plan__tenant_id").select_related("plan__account").first())
        if step is None:  # another tenant's, or gone: the same answer, as everywhere
            messages.error(request, f"Step {step_id}: not approved — it does not exist.")
            continue
        label = f"{step.plan.account.name}: step {step.sequence + 1} ({step.action_type})"
        try:
            services.step_approve(plan_id=plan_id, step_id=step_id, user=request.user, expected_version=shown_version)
        except DomainError as error:
            messages.error(request, f"{label}: not approved — {admin_views.refusal_message(error)}")
        else:
            messages.success(request, f"{label}: approved.")


def index_summary(request: HttpRequest) -> dict:
    """The index's "Needs your input" box: how many, how many overdue, the most urgent few. Shown to the
    approvers always (their landing page, "nothing" included) and to anyone else who has something waiting."""
    now = timezone.now()
    entries = inbox_entries(request.user, now=now, window=(0, INDEX_ITEMS))  # the few and the counts: one query
    return {
        "shown": bool(entries) or selectors.active_memberships(request.user).filter(role__in=APPROVERS).exists(),
        "count": len(entries),
        "overdue": entries.overdue,
        "rows": rows(inbox_items(request.user, now=now, entries=entries[:INDEX_ITEMS])),
        "inbox_url": reverse("admin:plans_revenueplan_inbox"),
    }
