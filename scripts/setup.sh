#!/usr/bin/env bash
# keel setup: idempotent. Installs the Node packages, a project .venv with the pinned
# Python tools (Temporal CLI, Ray, torch CPU, huggingface_hub, safetensors, numpy), the
# sglang and sglang-router wheels slime pins (downloaded, not installed: .cache/wheels) and,
# when running as root, the Debian packages the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[keel setup] %s\n' "$*" >&2; }

# --- Node packages -----------------------------------------------------------
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# --- Python tools in .venv ---------------------------------------------------
PY_REQS=scripts/requirements.txt
stamp=.venv/.keel-requirements
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
if ! cmp -s "$PY_REQS" "$stamp" 2>/dev/null; then
  say "pip install -r $PY_REQS (first time: about a minute)"
  .venv/bin/python -m pip install --disable-pip-version-check -q -r "$PY_REQS" 2> >(grep -v "is ignored" >&2)
  cp "$PY_REQS" "$stamp"
fi

# --- SGLang's wheels, read (never installed) for its argument catalogue --------
bash scripts/sglang-wheels.sh >/dev/null || say "could not download the sglang wheels (scripts/sglang-wheels.sh): the SGLang catalogue test fails without them"

# --- Debian packages the tests use ------------------------------------------
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# A real Slurm for the Slurm executor's tests and `keel local up --slurm` (daemons are started by keel, never as services).
for pkg in slurmctld slurmd slurm-client munge; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "apt-get install ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    say "missing Debian packages: ${need[*]} -- install them (apt-get install ${need[*]}); the ssh, Slurm and Web UI tests are skipped without them"
  fi
fi
say "ready"
