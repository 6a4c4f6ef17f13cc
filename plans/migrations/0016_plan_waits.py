"""The inbox's derived rows (plans.wait_models) and the triggers that mark a plan when what they copy changes.

A trigger marks the plan (plans_planwaitmark, a new generation each time) when a change can start, end or move
one of its waits: a plan's status or the facts plans.authority judges by, a DRAFT's or PAUSED plan's update, a
step entering or leaving PENDING_APPROVAL, a pause layer, a STEP_AWAITING_APPROVAL entry, an account's owner or
renewal date. The WHEN clauses keep the engine's hot path (a step's run, a plan's next_run_at) out of them; an
ACTIVE plan's change marks it only if it has rows. plans.waits.refresh rebuilds what is marked. At the end every
open plan is marked, so the first refresh builds the rows of the plans that exist.
"""
from django.db import migrations, models

MARK = """
CREATE SEQUENCE plans_planwaitmark_generation;

CREATE FUNCTION revplan_wait_mark(changed_plan uuid) RETURNS void LANGUAGE sql AS $$
    INSERT INTO plans_planwaitmark (plan_id, tenant_id, generation)
    SELECT id, tenant_id, nextval('plans_planwaitmark_generation') FROM plans_revenueplan WHERE id = changed_plan
    ON CONFLICT (plan_id) DO UPDATE SET generation = EXCLUDED.generation, tenant_id = EXCLUDED.tenant_id
$$;

-- A plan's own change: DRAFT and PAUSED plans always wait for someone; another (ACTIVE) only if it has rows or
-- a mark. Both in one condition, so one snapshot: a refresh commits the rows it built and removes the mark it
-- read together, so a change made while it runs sees one of the two.
CREATE FUNCTION revplan_wait_plan_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM plans_planwait WHERE plan_id = OLD.id;
        DELETE FROM plans_planwaitmark WHERE plan_id = OLD.id;
        RETURN NULL;
    END IF;
    IF NEW.plan_status IN ('DRAFT', 'PAUSED')
       OR (TG_OP = 'UPDATE' AND OLD.plan_status IN ('DRAFT', 'PAUSED'))
       OR EXISTS (SELECT 1 FROM plans_planwait WHERE plan_id = NEW.id)
       OR EXISTS (SELECT 1 FROM plans_planwaitmark WHERE plan_id = NEW.id) THEN
        INSERT INTO plans_planwaitmark (plan_id, tenant_id, generation)
        VALUES (NEW.id, NEW.tenant_id, nextval('plans_planwaitmark_generation'))
        ON CONFLICT (plan_id) DO UPDATE SET generation = EXCLUDED.generation, tenant_id = EXCLUDED.tenant_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION revplan_wait_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM revplan_wait_mark(OLD.plan_id);  -- a row moved to another plan leaves this one too
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.plan_id IS DISTINCT FROM OLD.plan_id) THEN
        PERFORM revplan_wait_mark(NEW.plan_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION revplan_wait_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO plans_planwaitmark (plan_id, tenant_id, generation)
    SELECT id, tenant_id, nextval('plans_planwaitmark_generation') FROM plans_revenueplan
    WHERE account_id = NEW.id AND plan_status IN ('DRAFT', 'ACTIVE', 'PAUSED')
    ON CONFLICT (plan_id) DO UPDATE SET generation = EXCLUDED.generation, tenant_id = EXCLUDED.tenant_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER wait_plan_inserted AFTER INSERT ON plans_revenueplan FOR EACH ROW
    WHEN (NEW.plan_status IN ('DRAFT', 'PAUSED')) EXECUTE FUNCTION revplan_wait_plan_changed();
CREATE TRIGGER wait_plan_updated AFTER UPDATE ON plans_revenueplan FOR EACH ROW
    WHEN (OLD.plan_status IS DISTINCT FROM NEW.plan_status
          OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.account_id IS DISTINCT FROM NEW.account_id
          OR OLD.plan_type IS DISTINCT FROM NEW.plan_type OR OLD.risk_level IS DISTINCT FROM NEW.risk_level
          OR OLD.created_by IS DISTINCT FROM NEW.created_by OR OLD.owner_id IS DISTINCT FROM NEW.owner_id
          OR OLD.edited_by_since_approval IS DISTINCT FROM NEW.edited_by_since_approval
          OR OLD.activated_at IS DISTINCT FROM NEW.activated_at OR OLD.paused_at IS DISTINCT FROM NEW.paused_at
          -- what a wait counts from when nothing else says: a DRAFT's or PAUSED plan's last update
          OR (OLD.updated_at IS DISTINCT FROM NEW.updated_at
              AND (NEW.plan_status IN ('DRAFT', 'PAUSED') OR NEW.activated_at IS NULL)))
    EXECUTE FUNCTION revplan_wait_plan_changed();
CREATE TRIGGER wait_plan_deleted AFTER DELETE ON plans_revenueplan FOR EACH ROW
    EXECUTE FUNCTION revplan_wait_plan_changed();

CREATE TRIGGER wait_step_inserted AFTER INSERT ON plans_planstep FOR EACH ROW
    WHEN (NEW.status = 'PENDING_APPROVAL') EXECUTE FUNCTION revplan_wait_row_changed();
CREATE TRIGGER wait_step_updated AFTER UPDATE ON plans_planstep FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND 'PENDING_APPROVAL' IN (OLD.status, NEW.status)
          OR (NEW.status = 'PENDING_APPROVAL' AND OLD.plan_id IS DISTINCT FROM NEW.plan_id))
    EXECUTE FUNCTION revplan_wait_row_changed();
CREATE TRIGGER wait_step_deleted AFTER DELETE ON plans_planstep FOR EACH ROW
    WHEN (OLD.status = 'PENDING_APPROVAL') EXECUTE FUNCTION revplan_wait_row_changed();

CREATE TRIGGER wait_layer_changed AFTER INSERT OR UPDATE OR DELETE ON plans_pauselayer FOR EACH ROW
    EXECUTE FUNCTION revplan_wait_row_changed();

CREATE TRIGGER wait_awaiting_entry AFTER INSERT ON plans_planledgerentry FOR EACH ROW
    WHEN (NEW.event_type = 'STEP_AWAITING_APPROVAL' AND NEW.plan_id IS NOT NULL)
    EXECUTE FUNCTION revplan_wait_row_changed();

CREATE TRIGGER wait_account_changed AFTER UPDATE ON plans_account FOR EACH ROW
    WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id OR OLD.renewal_date IS DISTINCT FROM NEW.renewal_date)
    EXECUTE FUNCTION revplan_wait_account_changed();

-- The plans that exist: their rows are built by the first refresh.
INSERT INTO plans_planwaitmark (plan_id, tenant_id, generation)
SELECT id, tenant_id, nextval('plans_planwaitmark_generation') FROM plans_revenueplan
WHERE plan_status IN ('DRAFT', 'PAUSED')
   OR (plan_status = 'ACTIVE' AND id IN (SELECT plan_id FROM plans_planstep WHERE status = 'PENDING_APPROVAL'));
"""

UNMARK = """
DROP TRIGGER IF EXISTS wait_account_changed ON plans_account;
DROP TRIGGER IF EXISTS wait_awaiting_entry ON plans_planledgerentry;
DROP TRIGGER IF EXISTS wait_layer_changed ON plans_pauselayer;
DROP TRIGGER IF EXISTS wait_step_deleted ON plans_planstep;
DROP TRIGGER IF EXISTS wait_step_updated ON plans_planstep;
DROP TRIGGER IF EXISTS wait_step_inserted ON plans_planstep;
DROP TRIGGER IF EXISTS wait_plan_deleted ON plans_revenueplan;
DROP TRIGGER IF EXISTS wait_plan_updated ON plans_revenueplan;
DROP TRIGGER IF EXISTS wait_plan_inserted ON plans_revenueplan;
DROP FUNCTION IF EXISTS revplan_wait_account_changed();
DROP FUNCTION IF EXISTS revplan_wait_row_changed();
DROP FUNCTION IF EXISTS revplan_wait_plan_changed();
DROP FUNCTION IF EXISTS revplan_wait_mark(uuid);
DROP SEQUENCE IF EXISTS plans_planwaitmark_generation;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('plans', '0015_ledger_tenant_event_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='PlanWait',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('tenant_id', models.UUIDField()),
                ('plan_id', models.UUIDField()),
                ('source', models.CharField(choices=[('DRAFT', 'Draft'), ('STEP', 'Step'), ('PAUSED', 'Paused')], max_length=8)),
                ('step_id', models.UUIDField(blank=True, null=True)),
                ('plan_type', models.CharField(max_length=64)),
                ('risk_level', models.CharField(max_length=8)),
                ('created_by', models.CharField(max_length=100)),
                ('edited_by_since_approval', models.JSONField(blank=True, default=list)),
                ('owner_id', models.IntegerField(blank=True, null=True)),
                ('account_owner_id', models.IntegerField(blank=True, null=True)),
                ('renewal_date', models.DateField(blank=True, null=True)),
                ('since', models.DateTimeField()),
                ('due_at', models.DateTimeField(blank=True, null=True)),
                ('due_key', models.CharField(blank=True, default='', max_length=16)),
                ('first_person', models.DateTimeField(blank=True, null=True)),
                ('first_policy', models.DateTimeField(blank=True, null=True)),
                ('first_retry_limit', models.DateTimeField(blank=True, null=True)),
                ('first_approval_stale', models.DateTimeField(blank=True, null=True)),
                ('first_owner_inactive', models.DateTimeField(blank=True, null=True)),
                ('first_held', models.DateTimeField(blank=True, null=True)),
                ('first_not_by_resume', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'indexes': [models.Index(fields=['tenant_id', 'source', 'due_key', 'due_at'], name='planwait_tenant_due_idx')],
                'constraints': [models.UniqueConstraint(fields=('plan_id', 'source', 'step_id'), name='planwait_one_per_wait', nulls_distinct=False)],
            },
        ),
        migrations.CreateModel(
            name='PlanWaitMark',
            fields=[
                ('plan_id', models.UUIDField(primary_key=True, serialize=False)),
                ('tenant_id', models.UUIDField()),
                ('generation', models.BigIntegerField()),
            ],
            options={
                'indexes': [models.Index(fields=['tenant_id'], name='planwaitmark_tenant_idx')],
            },
        ),
        migrations.RunSQL(MARK, UNMARK),
    ]
