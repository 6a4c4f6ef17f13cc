"""revplan.deploy.timestamps: the C-parsing timestamptz loader gives what Django's own loader gives."""
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader

from revplan.deploy.timestamps import UtcTimestamptzLoader

pytestmark = pytest.mark.django_db

VALUES = ["2026-12-01 16:51:26.123456+00", "2026-12-01 16:51:26+00", "2026-12-01 16:51:26.5+00",
          "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00", "2026-03-29 01:30:00+02", "epoch",
          "2024-02-29 12:00:00-05:30"]


def read(values: list[str]) -> list:
    with connection.cursor() as cursor:
        cursor.execute("SELECT v::timestamptz FROM unnest(%s::text[]) AS v", [values])
        return [row[0] for row in cursor.fetchall()]


def test_connections_use_it_and_read_what_djangos_loader_reads():
    connection.ensure_connection()
    assert connection.connection.adapters.get_loader(1184, 0) is UtcTimestamptzLoader
    fast = read(VALUES)
    register_tzloader(connection.timezone, connection.connection)  # Django's own, for this connection
    try:
        assert read(VALUES) == fast
        assert [value.tzinfo for value in fast] == [UTC] * len(VALUES)
        assert fast[0] == datetime(2026, 12, 1, 16, 51, 26, 123456, tzinfo=UTC)
    finally:
        connection.connection.adapters.register_loader(1184, UtcTimestamptzLoader)


def test_what_iso_parsing_refuses_goes_to_psycopg():
    # "infinity" is beyond Python's datetime either way: the same error as Django's loader raises.
    with pytest.raises(Exception, match=r"(?i)infinity|too large|range"):
        read(["infinity"])
