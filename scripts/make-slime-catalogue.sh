#!/usr/bin/env bash
# Regenerate the slime argument catalogue keel ships (src/plan/slime-args/): slime at COMMIT, Megatron-LM at the
# commit slime's docker/Dockerfile pins, with slime's Megatron patches applied as its image applies them; then
# scripts/slime_args_catalogue.py reads their parsers statically.
#   scripts/make-slime-catalogue.sh COMMIT [SLIME_REPO] [MEGATRON_REPO]
# The repos default to the public GitHub ones; a local clone or mirror works too.
set -euo pipefail
commit=${1:?usage: make-slime-catalogue.sh COMMIT [SLIME_REPO] [MEGATRON_REPO]}
slime_repo=${2:-https://github.com/THUDM/slime.git}
megatron_repo=${3:-https://github.com/NVIDIA/Megatron-LM.git}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

git clone --quiet --no-checkout "$slime_repo" "$work/slime"
git -C "$work/slime" checkout --quiet "$commit"
full=$(git -C "$work/slime" rev-parse HEAD)
megatron_commit=$(sed -n 's/^ARG MEGATRON_COMMIT=\([0-9a-f]*\).*/\1/p' "$work/slime/docker/Dockerfile" | head -n 1)
[ -n "$megatron_commit" ] || { echo "no MEGATRON_COMMIT in slime's docker/Dockerfile" >&2; exit 1; }

git clone --quiet --no-checkout "$megatron_repo" "$work/megatron"
git -C "$work/megatron" checkout --quiet "$megatron_commit"
for patch in "$work"/slime/docker/patch/latest/megatron*.patch; do
  git -C "$work/megatron" apply --3way "$patch"
done

out="$here/src/plan/slime-args/slime-${full:0:8}.json"
python3 "$here/scripts/slime_args_catalogue.py" --slime "$work/slime" --megatron "$work/megatron" --out "$out"
echo "wrote $out (slime $full, Megatron-LM $megatron_commit with slime's patches)"
