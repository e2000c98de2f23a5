#!/usr/bin/env bash
# Benchmark: the full Stream Manager rollout 12.3.0 -> 12.4.0 against the local AWS emulator,
# by three contenders, each on a freshly seeded fleet with the same emulated delays:
# red5-rollout on the fleet adopted as 12.3.0 (no history), "red5-rollout (history)" on a
# fleet it first rolled out to 12.3.1 (not counted), and an aws-cli script with its waiters
# (benches/awscli-rollout.sh). Prints wall time, AWS time and overhead, how fast each step was
# noticed, AWS calls by kind and the targets; JSON to target/bench/rollout-vs-awscli.json.
#
#   benches/rollout-vs-awscli.sh [--time-scale X] [--binary PATH] [--only NAME] [--delays JSON]
#
#   --time-scale X   emulated AWS pace: 1.0 (default) is AWS's real pace, 0.2 a quicker look
#   --binary PATH    red5-rollout; by default the release build in $CARGO_TARGET_DIR
#                    (~/.cache/red5-rollout-target) if current, else the debug one
#   --only NAME      one contender: red5-rollout, red5-rollout-history or aws-cli
# It creates the emulator's virtualenv when needed and installs aws-cli v1 into it.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${RED5_EMULATOR_VENV:-$REPO_DIR/target/emulator-venv}"

# aws-cli v1 up to 1.45.x pinned botocore exactly (1.45.N required botocore 1.43.N), and no
# release ever required botocore 1.44.x, the line the emulator pins. From 1.46.0 on,
# aws-cli carries its own copy of botocore (awscli/botocore, reached through an import
# alias only when awscli itself is imported) and requires no botocore at all, so 1.46.3
# installs next to the emulator's botocore without changing it. The checks below fail
# loudly if that ever stops being true.
AWSCLI_VERSION=1.46.3

die() {
    echo "rollout-vs-awscli: $*" >&2
    exit 1
}

for arg in "$@"; do
    if [[ "$arg" == "-h" || "$arg" == "--help" ]]; then
        sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
    fi
done

"$REPO_DIR/tests/emulator/emulator" setup

python="$VENV_DIR/bin/python"
pip_version() {
    "$python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'
}

botocore_before="$(pip_version botocore)"
[[ -n "$botocore_before" ]] || die "the emulator's virtualenv at $VENV_DIR has no botocore"
if [[ "$(pip_version awscli)" != "$AWSCLI_VERSION" ]]; then
    echo "rollout-vs-awscli: installing awscli==$AWSCLI_VERSION into $VENV_DIR" >&2
    "$python" -m pip install --quiet --disable-pip-version-check "awscli==$AWSCLI_VERSION" >&2
fi

# The emulator must still run on exactly the botocore it pins, moto must still import,
# and aws-cli must not ask for a botocore other than the installed one.
botocore_after="$(pip_version botocore)"
[[ "$botocore_after" == "$botocore_before" ]] \
    || die "installing awscli changed botocore from $botocore_before to $botocore_after"
"$python" - "$botocore_after" <<'PY' || die "the virtualenv is inconsistent after installing awscli"
import sys
from importlib.metadata import requires

import botocore
import moto
import moto.server  # noqa: F401 - the emulator's server must still import

installed = sys.argv[1]
assert botocore.__version__ == installed, (botocore.__version__, installed)
for requirement in requires("awscli") or []:
    name = requirement.split(";")[0].strip()
    if name.lower().startswith("botocore"):
        wanted = name[len("botocore"):].strip(" ()")
        assert wanted == f"=={installed}", f"awscli requires botocore {wanted}, {installed} is installed"
print(f"moto {moto.__version__} imports with botocore {installed}", file=sys.stderr)
PY
"$VENV_DIR/bin/aws" --version >&2

exec "$python" "$REPO_DIR/benches/rollout_bench.py" "$@"
