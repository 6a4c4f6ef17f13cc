"""Signals from outside: AccountSignal gains its tenant (filled from the account), source, external id and
who recorded it; one signal per (tenant, source, external_id) when the source gives an id."""
import django.db.models.deletion
from django.db import migrations, models

EVENT_TYPES = [
    ('PLAN_CREATED', 'Plan Created'), ('PLAN_EDITED', 'Plan Edited'), ('PLAN_APPROVED', 'Plan Approved'),
    ('PLAN_ACTIVATED', 'Plan Activated'), ('PLAN_PAUSED', 'Plan Paused'), ('PLAN_RESUMED', 'Plan Resumed'),
    ('PLAN_REVISED', 'Plan Revised'), ('PLAN_ABORTED', 'Plan Aborted'), ('PLAN_EXPIRED', 'Plan Expired'),
    ('PLAN_COMPLETED', 'Plan Completed'), ('PLAN_OWNER_CHANGED', 'Plan Owner Changed'),
    ('POLICY_REJECTED', 'Policy Rejected'), ('ACTIVATION_BLOCKED', 'Activation Blocked'),
    ('STEP_APPROVED', 'Step Approved'), ('STEP_SKIPPED', 'Step Skipped'),
    ('ACCOUNT_OWNER_CHANGED', 'Account Owner Changed'), ('KILL_SWITCH_FLIPPED', 'Kill Switch Flipped'),
    ('LEDGER_DIGEST', 'Ledger Digest'), ('ACTION_RETRY_SCHEDULED', 'Action Retry Scheduled'),
    ('ACTION_EXECUTED', 'Action Executed'), ('ACTION_FAILED', 'Action Failed'), ('ACTION_BLOCKED', 'Action Blocked'),
    ('ACTION_EXPIRED', 'Action Expired'), ('ACTION_CANCELLED', 'Action Cancelled'),
    ('ACTION_COMPENSATED', 'Action Compensated'), ('STEP_ATTEMPT_STARTED', 'Step Attempt Started'),
    ('STEP_AWAITING_APPROVAL', 'Step Awaiting Approval'), ('STEP_RETRY_SCHEDULED', 'Step Retry Scheduled'),
    ('AUTONOMY_CHANGED', 'Autonomy Changed'), ('CONNECTOR_CONFIG_CHANGED', 'Connector Config Changed'),
    ('ACTION_ROUTE_CHANGED', 'Action Route Changed'), ('MEMBERSHIP_CHANGED', 'Membership Changed'),
    ('PAUSE_LAYER_ADDED', 'Pause Layer Added'), ('PAUSE_LAYER_LIFTED', 'Pause Layer Lifted'),
    ('APPROVAL_VOIDED', 'Approval Voided'), ('PLAN_REAPPROVED', 'Plan Reapproved'), ('STEP_RETRIED', 'Step Retried'),
    ('STEP_CLOSED', 'Step Closed'), ('SIGNAL_RECORDED', 'Signal Recorded'), ('SIGNALS_IMPORTED', 'Signals Imported'),
    ('INTEGRATION_TOKEN_CREATED', 'Integration Token Created'),
    ('INTEGRATION_TOKEN_ROTATED', 'Integration Token Rotated'),
    ('INTEGRATION_TOKEN_REVOKED', 'Integration Token Revoked'),
]

# Existing rows take their account's tenant. The foreign key's check is deferred, so it is made
# immediate before the column turns NOT NULL: PostgreSQL refuses to alter a table with pending trigger events.
BACKFILL_TENANT = """
UPDATE plans_accountsignal AS signal SET tenant_id = account.tenant_id
FROM plans_account AS account WHERE account.id = signal.account_id;
SET CONSTRAINTS ALL IMMEDIATE;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('plans', '0010_integration_token'),
    ]

    operations = [
        migrations.AddField(
            model_name='accountsignal',
            name='tenant',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+',
                                    to='plans.tenant'),
        ),
        migrations.RunSQL(BACKFILL_TENANT, reverse_sql=migrations.RunSQL.noop),
        migrations.AlterField(
            model_name='accountsignal',
            name='tenant',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='plans.tenant'),
        ),
        migrations.AddField(
            model_name='accountsignal',
            name='source',
            field=models.CharField(default='system', max_length=64),
        ),
        migrations.AddField(
            model_name='accountsignal',
            name='external_id',
            field=models.CharField(blank=True, default='', max_length=200),
        ),
        migrations.AddField(
            model_name='accountsignal',
            name='recorded_by',
            field=models.CharField(default='system', max_length=100),
        ),
        migrations.AlterField(
            model_name='planledgerentry',
            name='event_type',
            field=models.CharField(choices=EVENT_TYPES, max_length=40),
        ),
        migrations.AddIndex(
            model_name='accountsignal',
            index=models.Index(fields=['account', '-observed_at'], name='signal_account_observed_idx'),
        ),
        migrations.AddConstraint(
            model_name='accountsignal',
            constraint=models.UniqueConstraint(condition=models.Q(('external_id', ''), _negated=True),
                                               fields=('tenant', 'source', 'external_id'),
                                               name='signal_tenant_source_external_id_unique'),
        ),
    ]
