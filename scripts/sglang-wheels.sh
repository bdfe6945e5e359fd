#!/usr/bin/env bash
# The sglang and sglang-router wheels slime's image pins, downloaded without their dependencies into .cache/wheels
# (idempotent: a wheel already there is not fetched again). keel never installs them: scripts/slime_args_catalogue.py
# reads their argument definitions straight out of the wheel.
#   scripts/sglang-wheels.sh [SGLANG_VERSION ROUTER_VERSION]   (default: the pins in scripts/sglang-pins.txt)
# Prints the two wheel paths, one a line.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sglang=${1:-$(sed -n 's/^sglang==//p' "$here/scripts/sglang-pins.txt")}
router=${2:-$(sed -n 's/^sglang-router==//p' "$here/scripts/sglang-pins.txt")}
cache="$here/.cache/wheels"
mkdir -p "$cache"
python=python3
[ -x "$here/.venv/bin/python" ] && python="$here/.venv/bin/python"
fetch() { # NAME VERSION FILE-PREFIX
  local found
  found=$(ls "$cache/$3-$2-"*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$found" ]; then
    # the Linux x86-64, CPython 3.11 wheel whatever machine asks: the same files everywhere
    "$python" -m pip download --disable-pip-version-check --quiet --no-deps --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 --abi abi3 \
      --platform manylinux_2_34_x86_64 --platform manylinux2014_x86_64 \
      -d "$cache" "$1==$2" 2> >(grep -v "is ignored" >&2)
    found=$(ls "$cache/$3-$2-"*.whl | head -n 1)
  fi
  echo "$found"
}
fetch sglang "$sglang" sglang
fetch sglang-router "$router" sglang_router
