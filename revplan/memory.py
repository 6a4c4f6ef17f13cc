"""The garbage collector's view of a long-running process (a gunicorn worker, a Celery worker child).

CPython's full (generation 2) collection walks every tracked object the process holds. After Django, DRF and
revplan are loaded that is ~200,000 objects: each full collection took 100-150 ms on the benchmark machine,
and one ran every ten or so requests — a request that happened to trigger it took 3-4 times its usual time
(tests/bench/bench_read_side.py saw p95 at 3x p50 on every page). What was loaded at start-up lives as long as
the process, so it is frozen out of the collector's walks (gc.freeze(), the way CPython's documentation
recommends for pre-loaded servers); objects made while serving are collected as before.
"""
import gc

from django.urls import get_resolver


def freeze_startup_heap(*, serves_requests: bool = False) -> None:
    """Collect what start-up left behind, then exclude the survivors from every later collection.

    A process that serves requests first loads what its first request would: Django imports the URLconf, and
    with it every view module, the admin's URL patterns and the API's schema decorations, only when a request
    first resolves a URL — ~18,000 objects that lived as long as the process and that every full collection
    walked after the freeze (the full pass at the benchmark's steady state: 7.2 ms, 2.7 ms with them frozen)."""
    if serves_requests:
        get_resolver().reverse_dict  # noqa: B018 - read for its effect: the URLconf imported, its patterns built
    gc.collect()
    gc.freeze()


def release_rendered_response(get_response):
    """Middleware: once a DRF response is rendered, cut the links that make it a reference cycle.

    DRF keeps the view and its request in `response.renderer_context`, rendering adds the response itself
    (`context["response"] = response`) and the view keeps it too (`view.response`): a cycle that holds the
    whole payload — every dict and list of a page of plans, ~800 objects — until the collector's full pass
    frees it, which then ran every ~20 requests and made their p95 (tests/bench/bench_read_side.py). Nothing
    reads those links after rendering, so the page is freed by reference counting when it has been sent."""

    def middleware(request):
        response = get_response(request)
        context = getattr(response, "renderer_context", None)
        if context is not None and getattr(response, "is_rendered", True):
            view = context.get("view")
            if getattr(view, "response", None) is response:
                view.response = None
            response.renderer_context = None
        return response

    return middleware
