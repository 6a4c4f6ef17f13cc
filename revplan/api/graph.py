"""GET /api/v1/plans/{id}/graph/: the plan's steps and dependencies as SVG (plans.graph), tenant-scoped."""
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import renderers
from rest_framework.generics import GenericAPIView

from plans import selectors
from plans.graph import step_graph_svg
from revplan.api.common import errors


class SvgRenderer(renderers.BaseRenderer):
    """Lets a client ask for image/svg+xml (Accept); the view answers errors as JSON (handle_exception)."""

    media_type, format, charset = "image/svg+xml", "svg", "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data.encode() if isinstance(data, str) else b""


class PlanGraphView(GenericAPIView):
    """The plan's step graph: a node per step (`<g class="node {status}">`, its live status in `data-status`:
    a PENDING step whose dependencies all finished in an ACTIVE plan is READY), an edge per dependency."""

    renderer_classes = [SvgRenderer, renderers.JSONRenderer]

    @extend_schema(responses={(200, "image/svg+xml"): OpenApiResponse(OpenApiTypes.STR, description="SVG document"),
                              **errors(401, 404)})
    def get(self, request, plan_id):
        plan = selectors.plan_for_user(request.user, plan_id)
        svg = step_graph_svg(plan, list(plan.steps.all()))
        response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
        # The steps' statuses change as the plan runs: a UI polls this, so no cache keeps an old picture.
        response["Cache-Control"] = "no-store"
        # Opened on its own, the document may style itself and nothing else: no script, no fetch, whatever it held.
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return response

    def handle_exception(self, exc):
        # The §7 error shape, as JSON whatever the client accepted (an SVG renderer has nothing to draw it with).
        self.request.accepted_renderer, self.request.accepted_media_type = renderers.JSONRenderer(), "application/json"
        return super().handle_exception(exc)
