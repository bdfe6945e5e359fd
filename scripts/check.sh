#!/usr/bin/env bash
# The full check: setup, format, lint, type check, then every test tier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx prettier --check .
npx eslint .
npx tsc -p . --noEmit
bash scripts/test.sh "$@"
