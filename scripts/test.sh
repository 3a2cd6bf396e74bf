#!/usr/bin/env bash
# The test command: install what is missing, then lint, type-check and run
# every test, integration tests included (they need root: namespaces,
# wireguard-go, iperf3). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/bootstrap.sh
# Here every prerequisite is installed: an integration test that cannot run is a failure, not a skip.
export WGH_REQUIRE_INTEGRATION=1
.venv/bin/ruff check harness suites tests
.venv/bin/ruff format --check harness suites tests
.venv/bin/mypy
status=0
.venv/bin/pytest tests "$@" || status=$?
if [ "$status" = 5 ]; then
    echo "test.sh: pytest collected no tests: that is a broken test tree, not a pass" >&2
    exit 1
fi
exit "$status"
