"""revplan.memory: a served API response is freed by reference counting, not left to the collector, and a web
worker's start-up is frozen out of its walks."""
import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from tests.api.helpers import client_for
from tests.factories import make_plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/plans/", "/api/v1/inbox/"])
def test_an_api_response_and_its_payload_go_when_it_is_dropped(world, url):
    make_plan(account=world.account)
    api = client_for(world.approver)
    gc.disable()  # nothing but reference counting frees them
    try:
        response = api.get(url)
        assert response.status_code == 200
        assert response.renderer_context is None  # cut once rendered
        payload = response.data
        response.json = None  # the test client's own cycle (a partial of the response), which no server makes
        gone = weakref.ref(response)
        del response
        assert gone() is None
        assert gc.get_referrers(payload) == []  # nothing but this test holds the payload
    finally:
        gc.enable()


def test_a_web_worker_freezes_its_views_with_its_start_up():
    """revplan.wsgi loads the URLconf — every view module, the admin's patterns — before it freezes: what the
    first request would have loaded is not left for every full collection to walk."""
    probe = ("import gc, sys; import revplan.wsgi; from django.urls import reverse; reverse('admin:index'); "
             "views = sys.modules['revplan.api.plans'].__dict__; "
             "print(gc.get_freeze_count() > 0, any(o is views for o in gc.get_objects()))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]  # frozen, and the API's views among the frozen
