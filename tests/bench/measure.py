"""Measuring a real worker from outside it, for the benchmarks: database counters, steps done, RSS.

- DbCounters: pg_stat_database (commits, tuples, sessions) and pg_stat_all_tables deltas (the catalog's too) over
  a window, with the cost of its own two reads measured apart (on a quiet database) and subtracted.
- StepLog: steps finished, counted from the workers' log lines ("step outcome recorded"), so waiting for
  a run to finish puts no query on the database being measured.
- pool_rss_kib: the resident memory of a worker's pool children (/proc/<pid>/status VmRSS).
"""
import itertools
import os
import statistics
import time
from pathlib import Path

from django.db import connection

DB_COUNTERS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated",
               "tup_deleted", "sessions")
TABLE_COUNTERS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins", "n_tup_upd",
                  "autovacuum_count", "autoanalyze_count")
# A backend sends its statistics at the end of a transaction at most once a second, and one that goes idle
# with some unsent waits PGSTAT_IDLE_INTERVAL (10 s, PostgreSQL 15) before it sends them: wait longer.
STATS_SETTLE_SECONDS = 11


def _read_database() -> dict:
    with connection.cursor() as cursor:
        # Its own transaction: at its end this backend sends what it has pending (a second after the last).
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(f"SELECT {', '.join(DB_COUNTERS)} FROM pg_stat_database WHERE datname = current_database()")
        return dict(zip(DB_COUNTERS, cursor.fetchone(), strict=True))


def _read_tables() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT schemaname || '.' || relname, seq_scan, seq_tup_read, COALESCE(idx_scan, 0), "
                       "COALESCE(idx_tup_fetch, 0), n_tup_ins, n_tup_upd, autovacuum_count, autoanalyze_count "
                       "FROM pg_stat_all_tables")
        return {row[0]: dict(zip(TABLE_COUNTERS, row[1:], strict=True)) for row in cursor.fetchall()}


class DbCounters:
    """Deltas of the database's counters over windows in which this process only reads them.

    calibrate() (with nothing else on the database) measures what one read of the counters costs; a window
    holds one read's worth of our own work (the first read's statements are counted after its snapshot,
    the second's clear before it), which window() subtracts.
    """

    def __init__(self):
        self.own_cost = dict.fromkeys(DB_COUNTERS, 0)

    def read(self) -> tuple[dict, dict]:
        time.sleep(1.1)  # our last transaction is more than a second old: the clear below sends it
        database = _read_database()
        return database, _read_tables()

    def calibrate(self, reads: int = 4) -> dict:
        samples = [self.read()[0]]
        for _ in range(reads):
            samples.append(self.read()[0])
        self.own_cost = {key: statistics.median(b[key] - a[key] for a, b in itertools.pairwise(samples))
                         for key in DB_COUNTERS}
        return self.own_cost

    def count_apart(self, action, *, settle: float) -> dict:
        """Run `action` (something the benchmark does in every window besides reading, like starting a
        beat) alone, and add what it cost to what window() subtracts; returns that cost."""
        before = self.read()
        action()
        time.sleep(settle)
        cost = self.window(before, self.read())[0]
        self.own_cost = {key: value + cost[key] for key, value in self.own_cost.items()}
        return cost

    def window(self, before: tuple[dict, dict], after: tuple[dict, dict]) -> tuple[dict, dict]:
        database = {key: after[0][key] - before[0][key] - self.own_cost[key] for key in DB_COUNTERS}
        tables = {}
        for name, row in after[1].items():
            delta = {key: value - before[1].get(name, {}).get(key, 0) for key, value in row.items()}
            if any(delta.values()):
                tables[name] = delta
        return database, tables


def per_step(delta: dict, steps: int, *, ndigits: int = 3) -> dict:
    return {key: round(value / steps, ndigits) for key, value in delta.items()}


class StepLog:
    """Counts "step outcome recorded" lines (one per finished step attempt) in worker logs, reading on."""

    MARKER = b"step outcome recorded"

    def __init__(self, *paths: Path):
        self.offsets = dict.fromkeys(paths, 0)
        self.count = 0

    def add(self, path: Path) -> None:
        self.offsets.setdefault(path, 0)

    def poll(self) -> int:
        for path, offset in self.offsets.items():
            if not path.exists():
                continue
            with open(path, "rb") as log:
                log.seek(offset)
                chunk = log.read()
            complete = chunk.rfind(b"\n") + 1  # a line being written is counted next time
            self.count += chunk[:complete].count(self.MARKER)
            self.offsets[path] = offset + complete
        return self.count

    def wait_for(self, count: int, *, timeout: float, interval: float = 0.25) -> bool:
        deadline = time.monotonic() + timeout
        while self.poll() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)
        return True


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def pool_rss_kib(worker_pid: int) -> dict[int, int]:
    """VmRSS of each pool child of a celery worker (the processes that run the tasks), by pid."""
    return {pid: kib for pid in child_pids(worker_pid) if (kib := rss_kib(pid)) is not None}
