#!/usr/bin/env bash
# Soak: SIGKILL a rollout at 50 seeded random moments against the local emulator, re-run
# until it converges, and check each trial ends with one of everything and nothing left
# behind (the test `killed_at_random_moments_every_run_converges_with_one_of_everything`
# with more trials). Prints the trials, the seed, the rollout's length and the re-runs each
# trial needed. Not part of CI: about 15 minutes.
#
#   benches/kill-anywhere.sh            # 50 trials, the default seed
#   RED5_KILL_TRIALS=100 RED5_KILL_SEED=7 benches/kill-anywhere.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/red5-rollout-target}"
export RED5_KILL_TRIALS="${RED5_KILL_TRIALS:-50}"
export RED5_KILL_SEED="${RED5_KILL_SEED:-$(date +%s)}"
start=$(date +%s)
cargo test --quiet --test integration -- --exact \
  e2e::killed_at_random_moments_every_run_converges_with_one_of_everything --nocapture 2>&1 |
  grep -E '^kill-anywhere:|panicked|test result'
echo "wall time: $(( $(date +%s) - start )) s"
