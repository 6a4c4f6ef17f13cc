"""Least-privilege PostgreSQL roles (DESIGN §6): an owner that runs the migrations and owns every table, and
the application's role, which owns nothing, may not create tables, and on the ledger may only SELECT and
INSERT, so it cannot TRUNCATE it, disable or drop its trigger, or change its definition.

`role_statements` reads the database as it is and returns the statements that bring it to that state, so
running them again changes nothing; `manage.py create_db_roles` prints or runs them. It expects a database
of revplan's own: every table, sequence, view and function in its schema passes to the owner.
"""
from dataclasses import dataclass

from psycopg import Connection, sql

SCHEMA = "public"
ROLE_ATTRIBUTES = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
RELATION_KINDS = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE",
                  "f": "FOREIGN TABLE"}

# Relations and routines of the schema not owned by `owner`; a sequence that belongs to a column (serial,
# identity) moves with its table, and what an extension made stays the extension's.
NOT_OWNED_RELATIONS = """
SELECT c.relkind, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND pg_get_userbyid(c.relowner) <> %(owner)s
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
ORDER BY c.relname
"""
NOT_OWNED_ROUTINES = """
SELECT p.oid::regprocedure::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s AND pg_get_userbyid(p.proowner) <> %(owner)s
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')
ORDER BY 1
"""


class RoleSetupError(Exception):
    """The roles asked for cannot be set up safely (the message says why and what to do)."""


@dataclass(frozen=True)
class Statement:
    run: sql.Composable  # what is executed
    shown: sql.Composable  # what is printed: the same, a password masked


def ledger_table() -> str:
    from plans.models import PlanLedgerEntry

    return PlanLedgerEntry._meta.db_table


def _same(statement: sql.Composable) -> Statement:
    return Statement(statement, statement)


def _role(connection: Connection, name: str, password: str | None) -> list[Statement]:
    row = connection.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [name]).fetchone()
    if row and row[0]:
        raise RoleSetupError(f"The role {name!r} is a superuser; it will not be turned into a least-privilege "
                             "role. Name another role.")
    head = sql.SQL("{verb} ROLE {name} WITH {attributes}").format(
        verb=sql.SQL("ALTER" if row else "CREATE"), name=sql.Identifier(name), attributes=ROLE_ATTRIBUTES)
    if not password:
        return [_same(head)]  # no password: an existing one stays; a new role logs in only as pg_hba.conf allows
    # Hashed here (SCRAM, as libpq does for \password): the password itself never reaches the server or its log.
    verifier = connection.pgconn.encrypt_password(password.encode(), name.encode(), None).decode()
    return [Statement(head + sql.SQL(" PASSWORD {}").format(sql.Literal(verifier)),
                      head + sql.SQL(" PASSWORD '********'"))]


def role_statements(connection: Connection, *, owner: str, app: str, owner_password: str | None = None,
                    app_password: str | None = None) -> list[Statement]:
    """What makes `owner` the owner of the database's objects and `app` a role with only what the app needs."""
    current = connection.execute("SELECT current_user, session_user, current_database()").fetchone()
    if owner == app:
        raise RoleSetupError(f"The owner and the application role are both {owner!r}; they must be two roles.")
    if {owner, app} & {current[0], current[1]}:
        raise RoleSetupError(f"The connection is made as {current[1]!r}, one of the roles to set up; connect as "
                             "a superuser that is neither.")
    database = current[2]
    schema, owner_id, app_id = sql.Identifier(SCHEMA), sql.Identifier(owner), sql.Identifier(app)
    statements = [*_role(connection, owner, owner_password), *_role(connection, app, app_password)]

    # The app must not be able to act as the owner.
    if connection.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
        "WHERE g.rolname = %s AND u.rolname = %s", [owner, app]).fetchone():
        statements.append(_same(sql.SQL("REVOKE {} FROM {}").format(owner_id, app_id)))
    # Owning the database (and so, on PostgreSQL 15, the public schema) or the schema is enough to drop tables.
    database_owner, schema_owner = connection.execute(
        "SELECT pg_get_userbyid(d.datdba), pg_get_userbyid(n.nspowner) FROM pg_database d, pg_namespace n "
        "WHERE d.datname = current_database() AND n.nspname = %s", [SCHEMA]).fetchone()
    if database_owner == app:
        statements.append(_same(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), owner_id)))
    if schema_owner == app:
        statements.append(_same(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema, owner_id)))
    statements += [
        _same(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(sql.Identifier(database), owner_id, app_id)),
        _same(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(schema, owner_id)),
        _same(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, app_id)),
        # PostgreSQL 15 no longer lets every role create in public; older servers did.
        _same(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC, {}").format(schema, app_id)),
    ]

    params = {"schema": SCHEMA, "owner": owner}
    for kind, name in connection.execute(NOT_OWNED_RELATIONS, params).fetchall():
        statements.append(_same(sql.SQL("ALTER {} {}.{} OWNER TO {}").format(
            sql.SQL(RELATION_KINDS[kind]), schema, sql.Identifier(name), owner_id)))
    for (signature,) in connection.execute(NOT_OWNED_ROUTINES, params).fetchall():
        # The signature is the server's own rendering of the routine, quoted as needed.
        statements.append(_same(sql.SQL("ALTER ROUTINE {} OWNER TO {}").format(sql.SQL(signature), owner_id)))

    statements += [
        # Tables a later migration creates: the app may read and write rows, nothing more.
        _same(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT, INSERT, UPDATE, DELETE "
                      "ON TABLES TO {}").format(owner_id, schema, app_id)),
        _same(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES "
                      "TO {}").format(owner_id, schema, app_id)),
        _same(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(schema, app_id)),
        _same(sql.SQL("REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA {} FROM {}").format(
            schema, app_id)),
        _same(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, app_id)),
    ]
    if ledger_exists(connection):
        table = sql.SQL("{}.{}").format(schema, sql.Identifier(ledger_table()))
        statements += [
            # The append-only ledger: read and append, nothing else.
            _same(sql.SQL("REVOKE UPDATE, DELETE ON TABLE {} FROM {}").format(table, app_id)),
            _same(sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(table)),
        ]
    return statements


def ledger_exists(connection: Connection) -> bool:
    return bool(connection.execute("SELECT to_regclass(%s)", [f"{SCHEMA}.{ledger_table()}"]).fetchone()[0])
