"""The Celery application: configured from Django settings under the CELERY_ namespace."""
import os
import select
import time

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "revplan.settings")

app = Celery("revplan")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def freeze_startup_heap(**_kwargs) -> None:
    """A pool child keeps what the worker loaded for its whole life: out of the collector's walks (revplan.memory)."""
    from revplan.memory import freeze_startup_heap as freeze

    freeze()


@worker_process_init.connect
def worker_connection_settings(**_kwargs) -> None:
    """A pool child's connections, set before it opens its first one, so every one it opens has them: they prepare
    the statements they repeat (DATABASE_WORKER_PREPARE_THRESHOLD) and live DATABASE_WORKER_CONN_MAX_AGE seconds.
    A new backend reads the catalog for every table it touches and plans every statement again (about 2,000 tuples
    fetched here), which a worker's steady stream of tasks need not pay every minute as a web request might."""
    from django.conf import settings
    from django.db import connections

    settings_dict = connections["default"].settings_dict
    settings_dict["CONN_MAX_AGE"] = settings.DATABASE_WORKER_CONN_MAX_AGE
    threshold = settings.DATABASE_WORKER_PREPARE_THRESHOLD
    if threshold == "off":
        return
    settings_dict.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=int(threshold))


@task_prerun.connect
@task_postrun.connect
def close_old_connections(sender=None, **_kwargs) -> None:
    """Django's request rule for every task: keep the connection (CONN_MAX_AGE, health-checked before reuse
    since CONN_HEALTH_CHECKS is on), close it only when it is broken or too old.

    Celery's Django fixup would otherwise close every connection before and after every task (unless
    CELERY_DB_REUSE_MAX is set, see settings), so each task began a new PostgreSQL backend."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # an eager task runs inside its caller's transaction
    from django.db import close_old_connections as close_if_unusable_or_obsolete

    close_if_unusable_or_obsolete()
    health_check_without_a_query()


# A connection the worker used this recently is trusted on a quiet socket; one idle for longer may have died
# without a word (its host gone, a NAT or load balancer that dropped it), and keeps Django's SELECT 1.
RECENT_USE_SECONDS = 5.0
_last_task_boundary: dict[str, float] = {}


def health_check_without_a_query() -> None:
    """Django's health check of a reused connection is a SELECT 1 before its next query: a transaction of its
    own in every task (about one commit per governed step). A server that ends a connection (a restart,
    pg_terminate_backend, idle_session_timeout) first sends its FATAL and closes the socket, so a connection
    used moments ago (the task before this one) whose socket has nothing to read is one SELECT 1 would find
    usable: its check is done. One with something to read (that, or a rare notice), or idle for longer than
    RECENT_USE_SECONDS, keeps Django's check, which closes it if it is dead."""
    from django.db import connections

    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        recent = now - _last_task_boundary.get(conn.alias, float("-inf")) < RECENT_USE_SECONDS
        _last_task_boundary[conn.alias] = now
        raw = conn.connection
        if not recent or raw is None or raw.closed or not conn.health_check_enabled or conn.health_check_done:
            continue
        try:
            readable, _, _ = select.select([raw.fileno()], [], [], 0)
        except (OSError, ValueError):
            continue
        if not readable:
            conn.health_check_done = True
