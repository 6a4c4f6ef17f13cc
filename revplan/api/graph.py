"""GET /api/v1/plans/{id}/graph/: the plan's steps and dependencies as SVG (plans.graph), tenant-scoped."""
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import renderers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from plans import selectors
from plans.graph import step_graph_svg
from revplan.api.common import errors


class SvgRenderer(renderers.BaseRenderer):
    """What a client must accept (Accept: image/svg+xml, image/* or */*); errors and OPTIONS go out as JSON."""

    media_type, format, charset = "image/svg+xml", "svg", "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        raise AssertionError("PlanGraphView answers an SVG as an HttpResponse and anything else as JSON")


class PlanGraphView(GenericAPIView):
    """The plan's step graph: a node per step (`<g class="node {status}">`, its live status in `data-status`:
    a PENDING step whose dependencies all finished in an ACTIVE plan is READY), an edge per dependency."""

    renderer_classes = [SvgRenderer]

    @extend_schema(
        responses={(200, "image/svg+xml"): OpenApiResponse(OpenApiTypes.STR, description="SVG document"),
                   **{(status, "application/json"): response for status, response in errors(401, 404, 406).items()}},
    )
    def get(self, request, plan_id):
        plan = selectors.plan_for_user(request.user, plan_id)
        svg = step_graph_svg(plan, list(plan.steps.all()))
        response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
        # The steps' statuses change as the plan runs: a UI polls this, so no cache keeps an old picture.
        response["Cache-Control"] = "no-store"
        # Opened on its own, the document may style itself and nothing else: no script, no fetch, whatever it held.
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response):
            # An error (the §7 shape) or OPTIONS' description: JSON whatever the client accepted, as everywhere.
            request.accepted_renderer, request.accepted_media_type = renderers.JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)
