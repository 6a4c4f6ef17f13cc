"""Admin lists of the safety net's time rules: the stuck plans (open episodes first) and the deadline notices.
Read-only: the detector and the job write these rows; a person acts on the plan itself (its own page)."""
from django.contrib import admin
from django.db.models import F
from django.urls import reverse
from django.utils.html import format_html

from orchestrator.deadlines.models import DeadlineNotice, StuckEpisode
from plans.admin import ReadOnlyAdmin, TenantListFilter


def _plan_link(obj) -> str:
    return format_html('<a href="{}">{}</a>', reverse("admin:plans_revenueplan_change", args=[obj.plan_id]),
                       obj.plan_id)


class StuckOpenFilter(admin.SimpleListFilter):
    title = "episode"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", "still stuck"), ("no", "moved since")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(StuckEpisode)
class StuckEpisodeAdmin(ReadOnlyAdmin):
    """What to do: open the plan; its "blocked by" and ledger say what was last seen. A plan still stuck after
    its re-drive needs a person (a worker's logs for its plan_id, then resume, revise or abort it)."""

    list_display = ["plan_link", "last_progress_at", "detected_at", "redriven_at", "resolved_at", "last_event"]
    list_filter = [StuckOpenFilter, TenantListFilter]
    # Open episodes first (PostgreSQL sorts NULLs last in ascending order), newest first.
    ordering = [F("resolved_at").asc(nulls_first=True), "-detected_at"]
    readonly_fields = ["plan_link", "tenant", "plan_version", "last_seen_seq", "last_progress_at", "detected_at",
                       "redriven_at", "resolved_at", "last_seen"]
    exclude = ["plan"]

    @admin.display(description="plan")
    def plan_link(self, obj):
        return _plan_link(obj)

    @admin.display(description="last ledger entry")
    def last_event(self, obj):
        return (obj.last_seen.get("last_entry") or {}).get("event_type") or "none"


@admin.register(DeadlineNotice)
class DeadlineNoticeAdmin(ReadOnlyAdmin):
    list_display = ["plan_link", "kind", "stage", "due_at", "final_at", "noticed_at", "outcome"]
    list_filter = ["stage", "kind", TenantListFilter]
    ordering = ["-noticed_at"]
    readonly_fields = ["plan_link", "tenant", "item_key", "kind", "step_id", "stage", "waiting_since", "due_at",
                       "final_at", "noticed_at", "recipient_ids", "outcome", "ledger_entry_id"]
    exclude = ["plan"]

    @admin.display(description="plan")
    def plan_link(self, obj):
        return _plan_link(obj)
