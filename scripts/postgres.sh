#!/usr/bin/env bash
# Starts Debian's PostgreSQL on loopback for the store tests and prints the URL
# of a test database (created if missing). Idempotent; as root. The server
# listens on 127.0.0.1 only (Debian's default listen_addresses is localhost).
set -euo pipefail
# Only the URL goes to stdout (callers capture it). Everything else, such as
# pg_ctlcluster's "Removed stale pid file.", goes to stderr; a redirection
# rather than a spare descriptor, so the server never holds the caller's pipe.
start() {
if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed"; then
    echo "postgres.sh: installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    pg_ctlcluster "$version" main start
fi
psql_as_postgres() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt "$@"; }
for i in $(seq 50); do psql_as_postgres -c "select 1" >/dev/null 2>&1 && break; sleep 0.1; done
if [ "$(psql_as_postgres -c "select 1 from pg_roles where rolname = 'wgharness'")" != 1 ]; then
    psql_as_postgres -c "create role wgharness login password 'wgharness'"
fi
if [ "$(psql_as_postgres -c "select 1 from pg_database where datname = 'wgharness_test'")" != 1 ]; then
    psql_as_postgres -c "create database wgharness_test owner wgharness"
fi
}
start >&2
echo "postgresql+psycopg://wgharness:wgharness@127.0.0.1:5432/wgharness_test"
