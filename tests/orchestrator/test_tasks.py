"""orchestrator.tasks: whether an advance runs the steps it starts (runs_steps)."""
from django.conf import settings
from django.test import override_settings

from orchestrator import tasks


def test_an_advance_runs_its_steps_under_a_step_tasks_limits_or_this_workers_own():
    step_limit = settings.CELERY_TASK_ANNOTATIONS["orchestrator.execute_step"]["soft_time_limit"]
    assert step_limit > 60  # the lease and the inline budget: far above the bookkeeping limit
    assert tasks.runs_steps(soft_time_limit=None, time_limit=None)
    assert tasks.runs_steps(soft_time_limit=step_limit, time_limit=step_limit + 10)


def test_an_advance_sent_with_the_bookkeeping_limits_sends_its_steps():
    # A message from a process that keeps advances short (an older release, a split pool's settings).
    assert not tasks.runs_steps(soft_time_limit=50, time_limit=60)
    assert not tasks.runs_steps(soft_time_limit=None, time_limit=60)


@override_settings(ORCHESTRATOR_ADVANCE_RUNS_STEPS=False)
def test_split_pools_keep_every_advance_from_connector_calls():
    assert not tasks.runs_steps(soft_time_limit=None, time_limit=None)
