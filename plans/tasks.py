"""Celery tasks of the plan domain (thin: call plans.ledger, plans.waits)."""
from celery import shared_task
from django.db import transaction

from plans import ledger, waits
from plans.models import Tenant


@shared_task(name="plans.tasks.ledger_digest_all_tenants", acks_late=True)
def ledger_digest_all_tenants() -> int:
    """Append one tenant-chain digest of changed plan-chain heads per tenant; returns how many."""
    tenant_ids = list(Tenant.objects.values_list("id", flat=True))
    for tenant_id in tenant_ids:
        with transaction.atomic():
            ledger.tenant_digest(tenant_id, actor=ledger.system_actor("ledger_digest"))
    return len(tenant_ids)


@shared_task(name="plans.tasks.refresh_waits", ignore_result=True)
def refresh_waits() -> int:
    """Rebuild the inbox rows of every plan marked since (an inbox read does its tenants' itself)."""
    return waits.refresh_all()
