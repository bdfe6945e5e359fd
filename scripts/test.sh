#!/usr/bin/env bash
# Runs keel's tests (after the idempotent setup). Tiers: unit, workflow, e2e, faults, ui.
# KEEL_TEST_TIERS="unit workflow" limits the run; extra arguments are passed to node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
tiers=${KEEL_TEST_TIERS:-"unit workflow e2e faults ui"}
files=()
for tier in $tiers; do
  [ -d "test/$tier" ] || continue
  while IFS= read -r f; do files+=("$f"); done < <(find "test/$tier" -name '*.test.ts' | sort)
done
if [ ${#files[@]} -eq 0 ]; then echo "no test files in tiers: $tiers" >&2; exit 1; fi
# Servers the tests start listen on loopback only: see scripts/loopback-only.sh.
exec bash scripts/loopback-only.sh node --import tsx --test --test-concurrency=1 --test-reporter=spec "$@" "${files[@]}"
