"""`manage.py create_db_roles`: create or update the owner role and the app's least-privilege role, and grants.

Run it with a superuser's connection before the first `migrate --database owner` and again after every
migrate (it is idempotent); `--print` shows the SQL and changes nothing.
"""
import os

import dj_database_url
import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from revplan.deploy.db_roles import RoleSetupError, ledger_exists, role_statements


def connect(url: str) -> psycopg.Connection:
    config = dj_database_url.parse(url)
    params = {"host": config["HOST"], "port": config["PORT"], "user": config["USER"],
              "password": config["PASSWORD"], "dbname": config["NAME"]}
    return psycopg.connect(**{key: value for key, value in params.items() if value not in (None, "")})


class Command(BaseCommand):
    help = ("Create or update the database's owner role (named in DATABASE_MIGRATE_URL) and the application's "
            "role (DATABASE_URL), with only the grants each needs; idempotent. Connects as DATABASE_ADMIN_URL.")
    requires_system_checks = []  # run to set the roles up: the ledger-role warning would only say why

    def add_arguments(self, parser):
        parser.add_argument("--admin-url", help="a superuser's connection to revplan's database "
                                                "(default: $DATABASE_ADMIN_URL)")
        parser.add_argument("--owner", help="the owner role (default: the user of DATABASE_MIGRATE_URL)")
        parser.add_argument("--app", help="the application's role (default: the user of DATABASE_URL)")
        parser.add_argument("--owner-password", help="default: the password in DATABASE_MIGRATE_URL")
        parser.add_argument("--app-password", help="default: the password in DATABASE_URL")
        parser.add_argument("--print", "--dry-run", dest="dry_run", action="store_true",
                            help="print the SQL it would run and change nothing")

    def handle(self, *args, **options):
        app_config = settings.DATABASES["default"]
        owner_config = settings.DATABASES.get("owner", app_config)
        owner = options["owner"] or owner_config["USER"]
        app = options["app"] or app_config["USER"]
        if not owner or not app or owner == app:
            raise CommandError(
                f"The owner role ({owner or 'none'}) and the application role ({app or 'none'}) must be two roles: "
                "set DATABASE_MIGRATE_URL (the owner) and DATABASE_URL (the app) to different users, or pass "
                "--owner and --app.")
        admin_url = options["admin_url"] or os.environ.get("DATABASE_ADMIN_URL")
        if not admin_url:
            raise CommandError("Name a superuser's connection to revplan's database: set DATABASE_ADMIN_URL or "
                               "pass --admin-url.")
        owner_password = options["owner_password"] or (owner_config["PASSWORD"] if owner == owner_config["USER"]
                                                       else None)
        app_password = options["app_password"] or (app_config["PASSWORD"] if app == app_config["USER"] else None)
        with connect(admin_url) as connection:
            try:
                statements = role_statements(connection, owner=owner, app=app, owner_password=owner_password,
                                             app_password=app_password)
            except RoleSetupError as error:
                raise CommandError(str(error)) from error
            database = connection.info.dbname
            self.stdout.write(f"-- database {database!r}: owner {owner!r}, application role {app!r}")
            with connection.transaction(force_rollback=options["dry_run"]):
                for statement in statements:
                    self.stdout.write(statement.shown.as_string(connection) + ";")
                    if not options["dry_run"]:
                        connection.execute(statement.run)
            if options["dry_run"]:
                self.stdout.write("-- printed only (--print): nothing was changed")
            elif not ledger_exists(connection):
                self.stdout.write(self.style.WARNING(
                    "The ledger table does not exist yet: run `manage.py migrate --database owner`, then this "
                    "command again, so the application role loses UPDATE and DELETE on it."))
            else:
                self.stdout.write(self.style.SUCCESS("roles and grants are in place"))
