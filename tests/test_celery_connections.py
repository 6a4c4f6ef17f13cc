"""revplan.celery's per-task connection rule: a healthy reused connection costs no SELECT 1, a dead one is replaced;
a pool child's connections prepare the statements they repeat and live longer than a web request's."""
import time

import psycopg
import pytest
from django.db import connection, connections
from django.test import override_settings

from revplan import celery as celery_module
from revplan.celery import close_old_connections


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    connection.close_at = None  # as with the worker's CONN_MAX_AGE (the tests' 0 closes it after every task)
    return pid


@pytest.mark.django_db(transaction=True)
def test_a_quiet_connection_is_reused_without_a_health_check_query():
    # given: a connection in use, health checks on
    assert connection.health_check_enabled
    pid = backend_pid()
    # when: a task ends and the next begins
    close_old_connections()
    close_old_connections()
    # then: its check is done without a query (Django would run SELECT 1 before the next one), same backend
    assert connection.health_check_done
    assert backend_pid() == pid


@pytest.mark.django_db(transaction=True)
def test_a_connection_idle_for_a_while_keeps_djangos_check(monkeypatch):
    # given: a connection whose last task ended longer ago than the bound (it may have died without a word)
    backend_pid()
    close_old_connections()
    monkeypatch.setattr(celery_module, "RECENT_USE_SECONDS", 0.0)
    # when: the next task begins
    close_old_connections()
    # then: Django's SELECT 1 is left to run before its first query
    assert not connection.health_check_done


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_ended_is_checked_and_replaced():
    # given: the server ends this process's connection between two tasks
    pid = backend_pid()
    with psycopg.connect(_conninfo(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)  # the FATAL and the close reach the socket
    # when: the next task begins
    close_old_connections()
    # then: the check is left to Django, which finds it dead, and the task's first query runs on a new backend
    assert not connection.health_check_done
    assert backend_pid() != pid


def _conninfo() -> str:
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(**{key: value for key, value in params.items()
                                            if key in ("host", "port", "user", "password", "dbname")})


def test_a_pool_child_prepares_repeated_statements_and_the_web_side_does_not(monkeypatch):
    options = connections["default"].settings_dict.setdefault("OPTIONS", {})
    assert "server_side_binding" not in options  # a web request's connection: client-side binding
    monkeypatch.setitem(connections["default"].settings_dict, "OPTIONS", dict(options))
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE",
                        connections["default"].settings_dict["CONN_MAX_AGE"])
    with override_settings(DATABASE_WORKER_PREPARE_THRESHOLD="off"):
        celery_module.worker_connection_settings()
    assert "prepare_threshold" not in connections["default"].settings_dict["OPTIONS"]
    with override_settings(DATABASE_WORKER_PREPARE_THRESHOLD="3"):
        celery_module.worker_connection_settings()
    assert connections["default"].settings_dict["OPTIONS"] == {**options, "server_side_binding": True,
                                                               "prepare_threshold": 3}


@pytest.mark.django_db(transaction=True)
def test_a_pool_child_keeps_its_connection_longer_than_a_web_request(monkeypatch):
    web_max_age = connections["default"].settings_dict["CONN_MAX_AGE"]
    monkeypatch.setitem(connections["default"].settings_dict, "OPTIONS",
                        dict(connections["default"].settings_dict.get("OPTIONS", {})))
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", web_max_age)
    with override_settings(DATABASE_WORKER_CONN_MAX_AGE=900):
        celery_module.worker_connection_settings()
    assert connections["default"].settings_dict["CONN_MAX_AGE"] == 900 != web_max_age
    connection.close()
    connection.ensure_connection()  # a connection opened now lives the worker's age, not the web's
    assert connection.close_at == pytest.approx(time.monotonic() + 900, abs=5)
    connection.close()  # the next test's connection gets the tests' own age again
