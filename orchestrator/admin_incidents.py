"""The admin's incidents page (/admin/incidents/): the plans a failing connector left PAUSED, grouped by
(tenant, connector, action type, failure class) as GET /api/v1/incidents/ shows them, and a tenant admin's
"Retry all" per group — a confirmation page, then orchestrator.incidents.incident_redrive, the API's service:
its results, one per plan, are shown on the page."""
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.http import urlencode

from orchestrator.incidents import IncidentKey, incident_groups, incident_redrive
from plans.errors import DomainError
from plans.services import require_admin

KEY_FIELDS = ("tenant", "connector", "action_type", "failure_class")


def _administers(user, tenant_id) -> bool:
    try:
        require_admin(user=user, tenant_id=tenant_id)
    except DomainError:
        return False
    return True


def _key(data) -> tuple[str, IncidentKey] | None:
    values = {name: (data.get(name) or "").strip() for name in KEY_FIELDS}
    if not all(values.values()):
        return None
    return values["tenant"], IncidentKey(values["connector"], values["action_type"], values["failure_class"])


def incidents_page(request: HttpRequest) -> HttpResponse:
    report, confirming = None, None
    if request.method == "POST":
        asked = _key(request.POST)
        if asked is None:
            messages.error(request, "The form names no incident.")
        else:
            tenant_slug, key = asked
            try:
                report = incident_redrive(user=request.user, key=key, tenant_slug=tenant_slug,
                                          reason=request.POST.get("reason", ""))
            except DomainError as refused:
                messages.error(request, f"Not retried: {refused.detail}")
            else:
                messages.success(request, f"{report.counted('RETRIED')} plan(s) retried, {report.counted('REFUSED')} "
                                          f"refused" + (f", {report.remaining} left for another run"
                                                        if report.remaining else "") + f" (batch {report.batch_id}).")
    groups = incident_groups(request.user)
    rows = [{"group": group, "may_retry": _administers(request.user, group.tenant_id),
             "query": "?" + urlencode({"tenant": group.tenant_slug, **group.key.as_dict()})} for group in groups]
    if request.method == "GET" and request.GET.get("confirm"):
        asked = _key(request.GET)
        confirming = next((row for row in rows if asked and row["may_retry"]
                           and (row["group"].tenant_slug, row["group"].key) == asked), None)
    context = {**admin.site.each_context(request), "title": "Incidents", "rows": rows, "report": report,
               "confirming": confirming}
    return TemplateResponse(request, "admin/orchestrator/incidents.html", context)
