"""Test-only `flush`: pytest-django's transactional tests empty every table with TRUNCATE after each test.

The ledger's trigger refuses TRUNCATE from any client. The test database's owner (like a
production table owner, which the application's role is not) may disable the trigger for the
wipe; it is switched back on straight after, whatever happens.
"""
from django.core.management.commands.flush import Command as DjangoFlushCommand
from django.db import connections

TRUNCATE_TRIGGER = "ALTER TABLE plans_planledgerentry {} TRIGGER ledger_refuse_truncate"


class Command(DjangoFlushCommand):
    def handle(self, **options):
        connection = connections[options["database"]]
        with connection.cursor() as cursor:
            cursor.execute(TRUNCATE_TRIGGER.format("DISABLE"))
        try:
            super().handle(**options)
        finally:
            with connection.cursor() as cursor:
                cursor.execute(TRUNCATE_TRIGGER.format("ENABLE"))
