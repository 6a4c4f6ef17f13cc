"""Make the ledger append-only in PostgreSQL itself: UPDATE, DELETE and TRUNCATE raise, from any client.

There is deliberately no setting that turns this off. Only the table's owner can disable the
trigger; in production the application's role does not own the table (README, "Ledger role").
"""
from django.db import migrations

FORWARD = """
CREATE FUNCTION revplan_ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'plans_planledgerentry is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ledger_refuse_update_delete
    BEFORE UPDATE OR DELETE ON plans_planledgerentry
    FOR EACH ROW EXECUTE FUNCTION revplan_ledger_refuse_change();

CREATE TRIGGER ledger_refuse_truncate
    BEFORE TRUNCATE ON plans_planledgerentry
    FOR EACH STATEMENT EXECUTE FUNCTION revplan_ledger_refuse_change();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS ledger_refuse_truncate ON plans_planledgerentry;
DROP TRIGGER IF EXISTS ledger_refuse_update_delete ON plans_planledgerentry;
DROP FUNCTION IF EXISTS revplan_ledger_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("plans", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
