"""plans.selectors.release_page: a written page's plans are freed by reference counting, not left as cycles
for the garbage collector's full pass (which was the lists' p95)."""
import gc
from contextlib import contextmanager

import pytest
from django.utils import timezone

from plans import selectors
from plans.models import PauseKind, PauseLayer, PlanStatus, PlanStep, RevenuePlan
from revplan.api.plans import plan_payloads
from tests.factories import AccountFactory, make_plan

pytestmark = pytest.mark.django_db


@contextmanager
def cyclic_garbage():
    """What becomes garbage only the collector can free, made inside the block."""
    gc.collect()
    gc.disable()
    found: list = []
    try:
        yield found
    finally:
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found.extend(gc.garbage)
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()


def models_in(objects) -> list:
    return [obj for obj in objects if isinstance(obj, (RevenuePlan, PlanStep, PauseLayer))]


def page_of(world):
    for status in (PlanStatus.DRAFT, PlanStatus.ACTIVE, PlanStatus.PAUSED):
        plan = make_plan(account=AccountFactory(tenant=world.tenant, owner=world.seller), status=status)
        if status == PlanStatus.PAUSED:
            PauseLayer.objects.create(plan=plan, kind=PauseKind.PERSON, reason_code="PAUSED_BY_USER",
                                      explanation="For a test.", set_by="system:tests",
                                      set_at=timezone.now())
    return list(selectors.plan_list_for_user(world.admin))


def test_a_written_page_leaves_no_plan_for_the_collector(world):
    page_of(world)  # warm: the first page fills caches that live on
    with cyclic_garbage() as garbage:
        payloads = plan_payloads(page_of(world))
        del payloads
    assert models_in(garbage) == []


def test_without_it_the_page_would_be_cycles(world):
    page_of(world)
    with cyclic_garbage() as garbage:
        plans = page_of(world)
        [list(plan.steps.all()) for plan in plans]
        del plans
    assert models_in(garbage)  # the links release_page cuts: what the test above holds it to


def test_a_released_plan_still_answers(world):
    [*_, plan] = page_of(world)
    steps = list(plan.steps.all())
    selectors.release_page([plan])
    assert [step.step_id for step in plan.steps.all()] == [step.step_id for step in steps]  # read again


def test_a_list_request_leaves_no_plan_for_the_collector(world):
    """Through the API: the paging drops the page's rows once they are written (the view and its request refer
    to each other, so rows kept on the page would be cycles too)."""
    from tests.api.helpers import client_for

    page_of(world)
    client = client_for(world.admin)
    assert client.get("/api/v1/plans/").status_code == 200  # warm
    with cyclic_garbage() as garbage:
        response = client.get("/api/v1/plans/")
        assert len(response.json()["results"]) == 3
        del response
    # No step or layer; of the plans, at most the page's first: Django's prefetch keeps it as its query's hint.
    assert [type(obj) for obj in models_in(garbage)] in ([], [RevenuePlan])
