"""System checks for production: a database role that could alter the ledger, an open /metrics, an unknown proxy.

revplan.W001 runs with every `manage.py` command that checks (runserver, check, the web start in the Procfile
and Dockerfile) and, logged, when a Celery worker starts (apps.py); W002 and W003 with `check --deploy`.
"""
from django.conf import settings
from django.core.checks import Warning, register
from django.db import DatabaseError, connections

from revplan.deploy.db_roles import ledger_table

# What the connected role could do to the ledger besides SELECT and INSERT. pg_has_role(..., 'MEMBER') also
# catches a role that can SET ROLE to the owner; owning the schema (or the database, through
# pg_database_owner) is enough to drop the table.
LEDGER_POWERS = """
SELECT current_user,
       r.rolsuper,
       pg_has_role(current_user, c.relowner, 'MEMBER'),
       pg_has_role(current_user, n.nspowner, 'MEMBER'),
       has_table_privilege(c.oid, 'TRUNCATE'),
       has_table_privilege(c.oid, 'TRIGGER'),
       has_table_privilege(c.oid, 'UPDATE'),
       has_table_privilege(c.oid, 'DELETE')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_roles r ON r.rolname = current_user
WHERE c.oid = to_regclass(%s)
"""
PRIVILEGES = ("TRUNCATE", "TRIGGER", "UPDATE", "DELETE")


def ledger_powers(cursor, table: str) -> tuple[str, list[str]] | None:
    """The connected role's name and what it could do to `table` beyond SELECT and INSERT (None: no table yet)."""
    cursor.execute(LEDGER_POWERS, [table])
    row = cursor.fetchone()
    if row is None:
        return None
    role, superuser, owns_table, owns_schema, *privileges = row
    if superuser:
        return role, ["is a superuser (it may do anything, disable the trigger included)"]
    reasons = []
    if owns_table:
        reasons.append("owns the table (it may disable or drop the trigger, or alter the table)")
    if owns_schema:
        reasons.append("owns the table's schema or the database (it may drop the table)")
    held = [name for name, has in zip(PRIVILEGES, privileges, strict=True) if has]
    if held:
        reasons.append(f"holds {', '.join(held)} on it")
    return role, reasons


# Tagged "revplan", not "database": Django's database checks do nothing unless --database is given, and this
# one is meant for every start. `migrate --database owner` passes only the owner's alias: migrating as the
# owner is what that role is for, so it is not warned about.
@register("revplan")
def ledger_role_check(app_configs, databases=None, **kwargs):
    if databases is not None and "default" not in databases:
        return []
    table = ledger_table()
    try:
        with connections["default"].cursor() as cursor:
            found = ledger_powers(cursor, table)
    except DatabaseError:
        return []  # no database to look at (not migrated, or down): other checks and the first query say so
    if found is None or not found[1]:
        return []
    role, reasons = found
    return [Warning(
        f"The database role {role!r} could alter the append-only ledger ({table}): it {'; it '.join(reasons)}.",
        hint="Connect DATABASE_URL as the application role `manage.py create_db_roles` makes (it owns nothing and "
             "may only SELECT and INSERT on the ledger) and migrate with `manage.py migrate --database owner`. "
             "On a developer machine that connects as postgres, this is expected.",
        id="revplan.W001",
    )]


@register("revplan", deploy=True)
def metrics_token_check(app_configs, **kwargs):
    if settings.REVPLAN_METRICS_TOKEN:
        return []
    return [Warning(
        "/metrics is open to anyone who can reach the app (REVPLAN_METRICS_TOKEN is not set).",
        hint="Set REVPLAN_METRICS_TOKEN to a long random value and give Prometheus the same as its bearer token.",
        id="revplan.W002",
    )]


@register("revplan", deploy=True)
def proxy_count_check(app_configs, **kwargs):
    if not settings.SECURE_PROXY_SSL_HEADER or settings.REST_FRAMEWORK.get("NUM_PROXIES"):
        return []
    return [Warning(
        "SECURE_PROXY_SSL_HEADER says a proxy stands in front of the app, but REVPLAN_NUM_PROXIES is 0: the API's "
        "rate limits would count every client as the proxy's one address.",
        hint="Set REVPLAN_NUM_PROXIES to the number of proxies that append to X-Forwarded-For (usually 1).",
        id="revplan.W003",
    )]
