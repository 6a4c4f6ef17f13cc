"""Queries and transactions per kind of task, for the in-process benchmarks.

Transactions = statements outside any atomic block (autocommit) + atomic blocks committed.
"""
import time
from contextlib import contextmanager
from unittest import mock

from django.db import connection


class DbWork:
    def __init__(self, kinds: tuple[str, ...]):
        self.counts = {kind: {"calls": 0, "queries": 0, "transactions": 0, "seconds": 0.0} for kind in kinds}
        self.current = kinds[0]

    def run(self, kind: str, fn, *args):
        """Call fn(*args), its database work counted under `kind`."""
        self.current = kind
        self.counts[kind]["calls"] += 1
        started = time.perf_counter()
        value = fn(*args)
        self.counts[kind]["seconds"] += time.perf_counter() - started
        return value

    @contextmanager
    def counting(self):
        real_commit = connection.commit

        def wrapper(execute, sql, params, many, context):
            self.counts[self.current]["queries"] += 1
            if not connection.in_atomic_block:
                self.counts[self.current]["transactions"] += 1
            return execute(sql, params, many, context)

        def counting_commit():
            self.counts[self.current]["transactions"] += 1
            return real_commit()

        with connection.execute_wrapper(wrapper), mock.patch.object(connection, "commit", counting_commit):
            yield self
