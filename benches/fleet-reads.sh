#!/usr/bin/env bash
# Benchmark: the AWS calls `status`, `plan` and a converged `apply` make for 50 pipelines
# on 50 groups in one region, and their wall time, against the local AWS emulator. Prints
# each figure next to its target (PASS / FAIL) and writes target/bench/fleet-reads.json.
#
#   benches/fleet-reads.sh [--pipelines N] [--time-scale X]
#
# Builds red5-rollout (release) in $CARGO_TARGET_DIR (~/.cache/red5-rollout-target) when
# there is no binary yet, and creates the emulator's virtualenv when needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/red5-rollout-target}"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
cargo build --quiet --release
tests/emulator/emulator setup >&2
exec target/emulator-venv/bin/python benches/fleet_reads.py "$@"
