from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CONCURRENTLY: steps write intents all the time; building the index must not block them. PostgreSQL builds
    # it outside a transaction.
    atomic = False

    dependencies = [
        ('orchestrator', '0008_read_side'),
    ]

    # The admin's intents list filtered by status (issue 20): its page and its bounded count through one index.
    operations = [
        AddIndexConcurrently(
            model_name='actionintent',
            index=models.Index(fields=['tenant', 'status', 'created_at', 'id'], name='intent_tenant_status_idx'),
        ),
    ]
