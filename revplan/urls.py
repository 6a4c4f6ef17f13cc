"""Top-level URLs: admin, API v1, OpenAPI schema and Swagger UI, Prometheus metrics."""
import hmac

from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from orchestrator.admin_incidents import incidents_page
from revplan.api.errors import error_body


def metrics_view(request):
    """Prometheus text format: ticks, advances, step outcomes, queue lag (orchestrator.metrics).

    With REVPLAN_METRICS_TOKEN set, only for `Authorization: Bearer <token>`; without it, open (settings.py says why).
    """
    from orchestrator.metrics import render

    expected = settings.REVPLAN_METRICS_TOKEN
    if expected:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # Compared in constant time, so the answer's timing tells nothing about how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            refused = JsonResponse(error_body("NOT_AUTHENTICATED", "/metrics needs Authorization: Bearer <the "
                                              "REVPLAN_METRICS_TOKEN of this deployment>."), status=401)
            refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return refused
    return HttpResponse(render(), content_type="text/plain; version=0.0.4; charset=utf-8")


# An unmatched /api/ URL (a malformed id, say) answers in the API's JSON error shape too.
handler404 = "revplan.api.errors.not_found_view"

urlpatterns = [
    path("metrics", metrics_view, name="metrics"),
    # Before admin/: a page of the admin's (its login, its look) that is no model's (orchestrator.admin_incidents).
    path("admin/incidents/", admin.site.admin_view(incidents_page), name="admin-incidents"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("revplan.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]
