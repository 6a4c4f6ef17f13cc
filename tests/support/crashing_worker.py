"""A celery app for integration tests whose pool processes die in the middle of marked steps.

`celery -A tests.support.crashing_worker worker` runs revplan's own app and tasks unchanged, except
that in each pool process the internal connector SIGKILLs its own process when the intent's
parameters carry CRASH_PARAMETER, after the attempt was claimed and before any outcome is recorded
(what an OOM kill or a segfault in a client library looks like to the orchestrator). Nothing outside
tests imports this module, so production workers cannot crash this way.
"""
import os
import signal

from celery.signals import worker_process_init

from revplan.celery import app

__all__ = ["CRASH_PARAMETER", "app"]

CRASH_PARAMETER = "crash_worker_process"


@worker_process_init.connect
def _crash_on_marked_intents(**_kwargs) -> None:
    # In the pool process, after Django is set up (importing connectors earlier would need the app registry).
    from orchestrator.execution.connectors.internal import InternalConnector

    execute = InternalConnector.execute

    def crashing_execute(self, intent):
        if intent.parameters.get(CRASH_PARAMETER):
            os.kill(os.getpid(), signal.SIGKILL)
        return execute(self, intent)

    InternalConnector.execute = crashing_execute
