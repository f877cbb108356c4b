#!/usr/bin/env bash
# Start PostgreSQL and Redis on loopback when their binaries are here and they are down.
# The integration tests decide what a missing service means (a failure under CI=true).
set -u
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if command -v pg_isready >/dev/null && ! pg_up && command -v pg_ctlcluster >/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 30); do pg_up && break; sleep 1; done
fi
if command -v redis-server >/dev/null && ! redis_up; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  for _ in $(seq 30); do redis_up && break; sleep 1; done
fi
exit 0
