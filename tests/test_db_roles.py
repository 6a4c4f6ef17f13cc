"""Least-privilege database roles (manage.py create_db_roles) and the ledger-role warning, revplan.W001.

This module makes a database of its own and walks the production sequence on it: create_db_roles,
`migrate --database owner` as the owner, create_db_roles again. The roles' names are unique to this run
(roles are shared by the whole server) and both are dropped at the end with the database; no other role
is touched. The test run's own database is left alone, so no test transaction holds a lock the
ownership changes would wait for.
"""
import io
import os
import secrets
from urllib.parse import quote

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection as django_connection
from django.utils import timezone
from psycopg import errors, sql

from plans.models import EventType, PlanLedgerEntry, Tenant
from tests.test_production_settings import CHECK_ID, PRODUCTION_ENV, run_django

SUFFIX = f"{os.getpid()}_{secrets.token_hex(3)}"
OWNER, APP = f"revplan_test_owner_{SUFFIX}", f"revplan_test_app_{SUFFIX}"
PASSWORDS = {OWNER: secrets.token_urlsafe(16), APP: secrets.token_urlsafe(16)}
LEDGER = PlanLedgerEntry._meta.db_table


def server() -> dict:
    settings_dict = django_connection.settings_dict
    return {"host": settings_dict["HOST"] or "127.0.0.1", "port": settings_dict["PORT"] or "5432",
            "user": settings_dict["USER"] or "postgres", "password": settings_dict["PASSWORD"] or ""}


def url(database: str, user: str | None = None) -> str:
    where = server()
    user = user or where["user"]
    password = PASSWORDS.get(user, where["password"])
    return f"postgres://{quote(user)}:{quote(password)}@{where['host']}:{where['port']}/{database}"


def connect(database: str, user: str | None = None, **options) -> psycopg.Connection:
    where = server()
    user = user or where["user"]
    return psycopg.connect(host=where["host"], port=where["port"], user=user, dbname=database,
                           password=PASSWORDS.get(user, where["password"]) or None, **options)


def create_roles(database: str, *extra: str, owner: str = OWNER, app: str = APP) -> str:
    out = io.StringIO()
    call_command("create_db_roles", *extra, admin_url=url(database), owner=owner, app=app,
                 owner_password=PASSWORDS.get(owner), app_password=PASSWORDS.get(app), stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def roles_db():
    """A database set up as production is, with this run's owner and application roles."""
    database = f"{django_connection.settings_dict['NAME']}_roles_{SUFFIX}"
    with connect("postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        first = create_roles(database)
        migrated = run_django(["manage.py", "migrate", "--database", "owner", "--noinput"],
                              SECRET_KEY=PRODUCTION_ENV["SECRET_KEY"], DATABASE_URL=url(database, APP),
                              DATABASE_MIGRATE_URL=url(database, OWNER))
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        second = create_roles(database)
        yield {"name": database, "first_run": first, "second_run": second}
    finally:
        with connect("postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            for role in (APP, OWNER):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def insert_sql(obj) -> tuple[sql.Composed, list]:
    """An INSERT of a model instance as the ORM would write it, for a raw connection."""
    fields = [field for field in obj._meta.local_concrete_fields if not field.db_returning]
    values = [field.get_db_prep_save(field.pre_save(obj, True), connection=django_connection) for field in fields]
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(obj._meta.db_table), sql.SQL(", ").join(sql.Identifier(field.column) for field in fields),
        sql.SQL(", ").join(sql.Placeholder() * len(fields)))
    return statement, values


def append_ledger_entry(conn: psycopg.Connection) -> None:
    tenant = Tenant(slug=f"roles-{secrets.token_hex(4)}", name="Roles test")
    conn.execute(*insert_sql(tenant))
    entry = PlanLedgerEntry(tenant_id=tenant.id, event_type=EventType.values[0], actor="system:test",
                            occurred_at=timezone.now(), chain_seq=1, prev_hash="0" * 64, entry_hash="1" * 64)
    conn.execute(*insert_sql(entry))


def test_the_app_role_may_append_to_the_ledger_and_read_it(roles_db):
    with connect(roles_db["name"], APP) as conn, conn.transaction(force_rollback=True):
        before = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(LEDGER))).fetchone()[0]
        append_ledger_entry(conn)
        after = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(LEDGER))).fetchone()[0]
    assert after == before + 1


@pytest.mark.parametrize("statement", [
    "UPDATE {ledger} SET explanation = 'rewritten'",
    "DELETE FROM {ledger}",
    "TRUNCATE {ledger}",
    "ALTER TABLE {ledger} DISABLE TRIGGER ALL",
    "ALTER TABLE {ledger} DISABLE TRIGGER ledger_refuse_update_delete",
    "DROP TRIGGER ledger_refuse_truncate ON {ledger}",
    "CREATE TRIGGER sneaky BEFORE INSERT ON {ledger} FOR EACH ROW EXECUTE FUNCTION revplan_ledger_refuse_change()",
    "ALTER TABLE {ledger} ADD COLUMN note text",
    "ALTER TABLE {ledger} OWNER TO CURRENT_USER",
    "DROP TABLE {ledger}",
    "CREATE OR REPLACE FUNCTION revplan_ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW;"
    " END$$",
    "CREATE TABLE intruder (id int)",
])
def test_the_app_role_cannot_change_the_ledger_or_its_definition(roles_db, statement):
    with connect(roles_db["name"], APP) as conn, conn.transaction(force_rollback=True):
        append_ledger_entry(conn)  # a row to act on
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            conn.execute(statement.format(ledger=LEDGER))


def test_the_app_role_reads_and_writes_ordinary_tables(roles_db):
    with connect(roles_db["name"], APP) as conn, conn.transaction(force_rollback=True):
        tenant = Tenant(slug=f"roles-{secrets.token_hex(4)}", name="Before")
        conn.execute(*insert_sql(tenant))
        conn.execute("UPDATE plans_tenant SET name = 'After' WHERE id = %s", [tenant.id])
        assert conn.execute("SELECT name FROM plans_tenant WHERE id = %s", [tenant.id]).fetchone() == ("After",)
        assert conn.execute("DELETE FROM plans_tenant WHERE id = %s", [tenant.id]).rowcount == 1
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            conn.execute("TRUNCATE plans_tenant CASCADE")


def test_the_owner_owns_every_table_and_the_app_role_nothing(roles_db):
    with connect(roles_db["name"]) as conn:
        owners = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"))
        app_owns = conn.execute("SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles "
                                "WHERE rolname = %s)", [APP]).fetchone()[0]
        attributes = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
                                  "WHERE rolname = ANY(%s)", [[OWNER, APP]]).fetchall()
    assert LEDGER in owners
    assert set(owners.values()) == {OWNER}
    assert app_owns == 0
    assert attributes == [(False, False, False, False)] * 2


def test_on_the_ledger_the_app_role_holds_select_and_insert_only(roles_db):
    privileges = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
    with connect(roles_db["name"]) as conn:
        held = {privilege: conn.execute("SELECT has_table_privilege(%s, %s, %s)", [APP, LEDGER, privilege]
                                        ).fetchone()[0] for privilege in privileges}
    assert held == {"SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False, "TRUNCATE": False,
                    "REFERENCES": False, "TRIGGER": False}


def test_a_table_a_later_migration_creates_gets_row_privileges_only(roles_db):
    with connect(roles_db["name"], OWNER, autocommit=True) as owner:
        owner.execute("CREATE TABLE later_table (id int)")
    try:
        with connect(roles_db["name"], APP) as conn, conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO later_table VALUES (1)")
            assert conn.execute("UPDATE later_table SET id = 2").rowcount == 1
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                conn.execute("TRUNCATE later_table")
    finally:
        with connect(roles_db["name"], OWNER, autocommit=True) as owner:
            owner.execute("DROP TABLE later_table")


def test_passwords_are_set_and_stored_only_as_scram_hashes(roles_db):
    with connect(roles_db["name"]) as conn:
        stored = dict(conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)",
                                   [[OWNER, APP]]))
    assert all(value.startswith("SCRAM-SHA-256$") for value in stored.values())
    for output in (roles_db["first_run"], roles_db["second_run"]):
        assert PASSWORDS[OWNER] not in output
        assert PASSWORDS[APP] not in output
        assert "PASSWORD '********'" in output


def test_the_first_run_says_to_run_again_after_migrate_and_the_second_tightens_the_ledger(roles_db):
    assert "run `manage.py migrate --database owner`, then this command again" in roles_db["first_run"]
    assert f'REVOKE UPDATE, DELETE ON TABLE "public"."{LEDGER}" FROM "{APP}";' in roles_db["second_run"]
    assert "roles and grants are in place" in roles_db["second_run"]


def test_running_it_again_changes_nothing(roles_db):
    snapshot = ("SELECT c.relname, pg_get_userbyid(c.relowner), c.relacl::text FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1")
    with connect(roles_db["name"]) as conn:
        before = conn.execute(snapshot).fetchall()
    output = create_roles(roles_db["name"])
    with connect(roles_db["name"]) as conn:
        after = conn.execute(snapshot).fetchall()
    assert after == before
    assert " OWNER TO " not in output  # everything is the owner's already


def test_print_shows_the_sql_and_changes_nothing(roles_db):
    newcomer = f"revplan_test_printed_{SUFFIX}"
    output = create_roles(roles_db["name"], "--print", app=newcomer)
    assert f'CREATE ROLE "{newcomer}" WITH LOGIN NOSUPERUSER' in output
    assert f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "public" TO "{newcomer}";' in output
    assert "nothing was changed" in output
    with connect(roles_db["name"]) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [newcomer]).fetchone() is None


@pytest.mark.parametrize(("owner", "app", "message"), [
    (OWNER, OWNER, "must be two roles"),
    (OWNER, "postgres", "one of the roles to set up"),  # the connection's own role
])
def test_refuses_roles_it_cannot_make_least_privileged(roles_db, owner, app, message):
    with pytest.raises(CommandError, match=message):
        create_roles(roles_db["name"], owner=owner, app=app)


def test_refuses_to_demote_a_superuser(roles_db):
    superuser = f"revplan_test_super_{SUFFIX}"
    with connect("postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN SUPERUSER").format(sql.Identifier(superuser)))
        try:
            with pytest.raises(CommandError, match=f"The role '{superuser}' is a superuser"):
                create_roles(roles_db["name"], app=superuser)
            assert admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [superuser]).fetchone() == (True,)
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(superuser)))


def test_without_an_admin_connection_it_says_which_variable_to_set(monkeypatch):
    monkeypatch.delenv("DATABASE_ADMIN_URL", raising=False)
    with pytest.raises(CommandError, match="DATABASE_ADMIN_URL"):
        call_command("create_db_roles", owner=OWNER, app=APP, stdout=io.StringIO())


# --- revplan.W001 and check --deploy -------------------------------------------------------------


@pytest.mark.parametrize(("user", "warned", "because"), [
    ("postgres", True, "is a superuser"),
    (OWNER, True, "owns the table"),
    (APP, False, None),
])
def test_the_ledger_role_check_warns_unless_connected_as_the_app_role(roles_db, user, warned, because):
    result = run_django(["manage.py", "check"], SECRET_KEY=PRODUCTION_ENV["SECRET_KEY"],
                        DATABASE_URL=url(roles_db["name"], user if user != "postgres" else None))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert ("revplan.W001" in output) == warned, output
    if because:
        assert because in output


def test_a_worker_start_logs_the_warning_celery_would_not_show(transactional_db, caplog):
    # Celery runs Django's checks when a worker starts and shows none of what they find.
    from celery.signals import worker_init

    from revplan.deploy.apps import warn_at_worker_start

    assert any(receiver is warn_at_worker_start for _, receiver in worker_init.receivers)  # connected strongly
    with caplog.at_level("WARNING", logger="revplan.deploy"):
        warn_at_worker_start()  # the tests connect as the superuser postgres
    assert any("revplan.W001" in record.getMessage() and "is a superuser" in record.getMessage()
               for record in caplog.records)


def test_migrating_as_the_owner_is_not_warned_about(roles_db):
    result = run_django(["manage.py", "migrate", "--database", "owner", "--noinput"],
                        SECRET_KEY=PRODUCTION_ENV["SECRET_KEY"], DATABASE_URL=url(roles_db["name"], APP),
                        DATABASE_MIGRATE_URL=url(roles_db["name"], OWNER))
    assert result.returncode == 0, result.stderr
    assert "revplan.W001" not in result.stdout + result.stderr


def test_check_deploy_is_clean_with_the_documented_production_variables(roles_db):
    # given: every variable of the production checklist, the app connected as its least-privilege role
    env = {**PRODUCTION_ENV, "DATABASE_URL": url(roles_db["name"], APP),
           "DATABASE_MIGRATE_URL": url(roles_db["name"], OWNER)}
    # when
    result = run_django(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **env)
    # then
    output = result.stdout + result.stderr
    assert CHECK_ID.findall(output) == [], output
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
