#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on localhost; start the machine's own if they are down.
# Used by `make run`, `make test` and .ci/run. Elsewhere: `docker compose up -d postgres redis`.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # port, name
  for _ in $(seq 1 60); do listening "$1" && return 0; sleep 0.5; done
  echo "$2 did not come up on 127.0.0.1:$1" >&2
  return 1
}

if ! listening 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL is down: starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432; start it, or run: docker compose up -d postgres redis" >&2
    exit 1
  fi
  wait_for 5432 PostgreSQL
fi

if ! listening 6379; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "Redis is down: starting a local redis-server"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  else
    echo "Redis is not running on 127.0.0.1:6379; start it, or run: docker compose up -d postgres redis" >&2
    exit 1
  fi
  wait_for 6379 Redis
fi
echo "PostgreSQL and Redis are up"
