#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, run the local
# lab (two network namespaces, wireguard-go on both ends, iperf3 through the
# tunnel), store the run under results/, and show what is stored.
# Extra arguments go to `wgharness run` (e.g. --repeat 3 --build mybuild).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/bootstrap.sh
status=0
.venv/bin/wgharness run labs/local.toml "$@" || status=$?
echo
.venv/bin/wgharness results list --limit 5
echo
echo "Compared with the run before it (wgharness compare latest~1 latest):"
.venv/bin/wgharness compare latest~1 latest || true
exit "$status"
