"""Django app config for the production-safety checks and the database-role command."""
import logging

from django.apps import AppConfig

logger = logging.getLogger("revplan.deploy")


def warn_at_worker_start(**kwargs) -> None:
    """Celery runs Django's checks when a worker starts but shows none of their warnings: log the ledger one."""
    from django.db import connections

    from revplan.deploy.checks import ledger_role_check

    for warning in ledger_role_check(None):
        logger.warning("%s: %s %s", warning.id, warning.msg, warning.hint)
    connections["default"].close()  # opened before the pool forks; each child opens its own


class DeployConfig(AppConfig):
    name = "revplan.deploy"
    label = "revplan_deploy"

    def ready(self) -> None:
        from celery.signals import worker_init
        from django.db.backends.signals import connection_created

        import revplan.deploy.checks  # noqa: F401  (registers the checks)
        from revplan.deploy.timestamps import use_fast_timestamp_loader

        connection_created.connect(use_fast_timestamp_loader, dispatch_uid="revplan.deploy.fast_timestamps")

        worker_init.connect(warn_at_worker_start, weak=False, dispatch_uid="revplan.deploy.worker_start")
