#!/usr/bin/env bash
# The README's verdict matrix: every shipped scenario against each implementation
# of its subject end (default: wireguard-go pyref kernel; kernel boots a QEMU guest),
# one bundle each under results/matrix/, then the table in Markdown.
#   bash scripts/repro-matrix.sh [IMPL...]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/bootstrap.sh || exit $?
impls=("$@")
[ "${#impls[@]}" -gt 0 ] || impls=(wireguard-go pyref kernel)
mkdir -p results/matrix
bundles=()
for scenario in scenarios/*.toml; do
    name=$(basename "$scenario" .toml)
    [ "$name" = lab ] && continue
    for impl in "${impls[@]}"; do
        out="results/matrix/$name-$impl.tar.gz"
        .venv/bin/wgharness repro "$scenario" --impl "$impl" --out "$out"
        status=$?
        # 0 and 1 are verdicts; 2 and 3 mean no verdicts (usage, infrastructure).
        if [ "$status" -le 1 ] && [ -f "$out" ]; then bundles+=("$out"); else echo "repro-matrix: $name/$impl: exit $status" >&2; fi
    done
done
.venv/bin/python -m harness.repro.matrix "${bundles[@]}"
