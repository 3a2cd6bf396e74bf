#!/usr/bin/env bash
# The test command: install what is missing, then lint, type-check and run
# every test, integration tests included (they need root: namespaces,
# wireguard-go, iperf3). Extra arguments go to pytest. The fast tier, no root:
# `tox -e fast` (pytest tests -m "not integration and not slow").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/bootstrap.sh
# Here every prerequisite is installed: an integration test that cannot run is a failure, not a skip.
export WGH_REQUIRE_INTEGRATION=1
# A real PostgreSQL on loopback for the store tests; stopped again if this script started it.
was_online=$(pg_lsclusters -h 2>/dev/null | awk '$4 == "online"' | wc -l || true)
WGH_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)
if [[ $WGH_TEST_POSTGRES_URL != postgresql+psycopg://* || $WGH_TEST_POSTGRES_URL == *$'\n'* ]]; then
    echo "test.sh: scripts/postgres.sh printed more than one URL: $WGH_TEST_POSTGRES_URL" >&2
    exit 1
fi
export WGH_TEST_POSTGRES_URL
if [ "${was_online:-0}" = 0 ]; then
    trap 'pg_ctlcluster "$(ls /usr/lib/postgresql | sort -n | tail -n 1)" main stop || true' EXIT
fi
.venv/bin/ruff check harness suites tests
.venv/bin/ruff format --check harness suites tests
.venv/bin/mypy
status=0
# --durations=25: the slowest tests, named with their times, so a slower run says where.
.venv/bin/pytest tests --durations=25 "$@" || status=$?
if [ "$status" = 5 ]; then
    echo "test.sh: pytest collected no tests: that is a broken test tree, not a pass" >&2
    exit 1
fi
exit "$status"
