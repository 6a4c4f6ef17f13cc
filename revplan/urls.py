"""Top-level URLs: admin, API v1, OpenAPI schema and Swagger UI."""
from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView


def metrics_view(request):
    """Prometheus text format: ticks, advances, step outcomes, queue lag (orchestrator.metrics)."""
    from orchestrator.metrics import render

    return HttpResponse(render(), content_type="text/plain; version=0.0.4; charset=utf-8")


# An unmatched /api/ URL (a malformed id, say) answers in the API's JSON error shape too.
handler404 = "revplan.api.errors.not_found_view"

urlpatterns = [
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("revplan.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]
