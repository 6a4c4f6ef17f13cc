"""revplan.template_backend (with plans.admin_base: released_once_rendered, change_list_template): a rendered page
is freed by reference counting once it is sent — its context, the rows it showed and their relations, the request's
frames are no cycles left for the collector's full pass (which was the admin pages' p95)."""
import gc
import weakref
from types import FrameType

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Model
from django.template import engines
from django.template.backends.django import Template as DjangosTemplate

from revplan.template_backend import ReleasingDjangoTemplates, ReleasingTemplate
from tests.api.test_list_paging import _mixed_plans
from tests.plans.test_admin import draft
from tests.plans.test_admin_list_queries import console
from tests.plans.test_release_page import cyclic_garbage, models_in


class Shown:
    name = "shown"


def kept_after_render(template_class, request) -> bool:
    """Whether what a page showed outlives its rendering when only reference counting runs."""
    backend = engines["django"]
    template = template_class(backend.engine.from_string("{{ shown.name }} {{ user }}"), backend)
    gc.collect()
    gc.disable()
    try:
        shown = Shown()
        gone = weakref.ref(shown)
        assert template.render({"shown": shown}, request).startswith("shown ")
        del shown
        return gone() is not None
    finally:
        gc.enable()


def test_the_project_renders_with_the_releasing_backend():
    assert isinstance(engines["django"], ReleasingDjangoTemplates)
    assert isinstance(engines["django"].get_template("admin/base.html"), ReleasingTemplate)


def test_a_rendered_context_goes_with_reference_counting(rf):
    request = rf.get("/")
    assert kept_after_render(DjangosTemplate, request)  # Django's own: the context and its ContextDict, a cycle
    assert not kept_after_render(ReleasingTemplate, request)


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "rows_shown"), [
    ("/admin/plans/revenueplan/", lambda context: context["cl"].result_list),
    ("/admin/plans/revenueplan/open/", lambda context: context["rows"]),
    ("/admin/plans/revenueplan/inbox/", lambda context: context["rows"]),
    ("/admin/plans/planledgerentry/", lambda context: context["cl"].result_list),
    ("/admin/orchestrator/actionintent/", lambda context: context["cl"].result_list),
])
def test_an_admin_page_leaves_no_row_for_the_collector(world, url, rows_shown):
    client = console(world.approver)
    _mixed_plans(world, 4)
    draft(world)  # through the services: the ledger page has its entries
    assert client.get(url).status_code == 200  # warm: the first page fills caches that live on
    with cyclic_garbage() as garbage:
        response = client.get(url)
        assert response.status_code == 200
        assert len(rows_shown(response.context)) >= 1  # the test client's copy of the context still answers
        response.json = None  # the test client's own cycle (a partial of the response), which no server makes
        del response
    assert models_in(garbage) == []
    # Nor any row of the page, nor its frames (the request's user is the request's own, whatever the page).
    assert [obj for obj in garbage if issubclass(type(obj), Model) and not isinstance(obj, get_user_model())] == []
    assert [obj for obj in garbage if isinstance(obj, FrameType)] == []
