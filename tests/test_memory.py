"""revplan.memory: a served API response is freed by reference counting, not left to the collector."""
import gc
import weakref

import pytest

from tests.api.helpers import client_for
from tests.factories import make_plan


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
