#!/usr/bin/env bash
# Starts a scratch PostgreSQL cluster for the store's PostgreSQL tests and prints its URL.
# Local socket only (no TCP listener), peer authentication: no password exists to leak.
#
# Only the URL goes to stdout (the Makefile captures it): every tool's chatter
# ("Removed stale pid file." after an unclean stop, for one) goes to stderr. The
# daemon must not inherit stdout either, or `$(...)` would wait for it forever.
set -euo pipefail
PORT=54329

start_cluster() {
  local ver me
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if ! pg_lsclusters -h | awk '{print $2}' | grep -qx vmwarden; then
    pg_createcluster "$ver" vmwarden -p "$PORT" -- --auth-local=peer --auth-host=reject
    echo "listen_addresses = ''" >> "/etc/postgresql/$ver/vmwarden/postgresql.conf"
  fi
  pg_ctlcluster "$ver" vmwarden status >/dev/null 2>&1 || pg_ctlcluster "$ver" vmwarden start
  me=$(id -un)
  su postgres -c "psql -p $PORT -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='$me'\"" | grep -q 1 \
    || su postgres -c "psql -p $PORT -qc 'CREATE ROLE \"$me\" LOGIN'"
  su postgres -c "psql -p $PORT -qtAc \"SELECT 1 FROM pg_database WHERE datname='vmwarden_test'\"" | grep -q 1 \
    || su postgres -c "psql -p $PORT -qc 'CREATE DATABASE vmwarden_test OWNER \"$me\"'"
}

start_cluster >&2
echo "postgresql+psycopg:///vmwarden_test?host=/var/run/postgresql&port=$PORT"
