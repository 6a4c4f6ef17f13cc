from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CONCURRENTLY: the ledger is appended to by every step; building the index must not block those writes.
    # PostgreSQL builds it outside a transaction.
    atomic = False

    dependencies = [
        ('plans', '0014_read_side'),
    ]

    # The admin's ledger list filtered by event type (issue 20): its page and its bounded count through one index.
    operations = [
        AddIndexConcurrently(
            model_name='planledgerentry',
            index=models.Index(fields=['tenant', 'event_type', 'occurred_at', 'id'], name='ledger_tenant_event_idx'),
        ),
    ]
