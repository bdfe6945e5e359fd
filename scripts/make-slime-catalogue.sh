#!/usr/bin/env bash
# Regenerate the slime argument catalogue keel ships (src/plan/slime-args/slime-<commit>.json): slime at COMMIT,
# Megatron-LM at the commit slime's docker/Dockerfile pins, with slime's Megatron patches applied as its image applies
# them, SGLang and sglang-router at the versions the Dockerfile pins (their wheels, downloaded without dependencies
# and never installed, with slime's SGLang patches applied to server_args.py); then scripts/slime_args_catalogue.py
# reads their parsers statically.
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

# SGLang: the image tag (v0.5.15.post1-cu129 -> 0.5.15.post1); the router: the version of the wheel it installs
sglang_version=$(sed -n 's/^ARG SGLANG_IMAGE_TAG=v\([^-]*\).*/\1/p' "$work/slime/docker/Dockerfile" | head -n 1)
router_version=$(grep -o 'sglang_router-[0-9][^-]*-' "$work/slime/docker/Dockerfile" | head -n 1 | sed 's/^sglang_router-//; s/-$//')
[ -n "$sglang_version" ] && [ -n "$router_version" ] || { echo "no SGLang or router version in slime's docker/Dockerfile" >&2; exit 1; }
mapfile -t wheels < <(bash "$here/scripts/sglang-wheels.sh" "$sglang_version" "$router_version")
patches=()
for name in $(sed -n 's/.*for patch in \(sglang[^;]*\);.*/\1/p' "$work/slime/docker/Dockerfile" | head -n 1); do
  [ -f "$work/slime/docker/patch/latest/$name" ] && patches+=(--sglang-patch "$work/slime/docker/patch/latest/$name")
done

out="$here/src/plan/slime-args/slime-${full:0:8}.json"
python3 "$here/scripts/slime_args_catalogue.py" --slime "$work/slime" --megatron "$work/megatron" \
  --sglang-wheel "${wheels[0]}" --sglang-router-wheel "${wheels[1]}" "${patches[@]}" --out "$out"
(cd "$here" && npx prettier --log-level warn --write "$out")
echo "wrote $out (slime $full, Megatron-LM $megatron_commit with slime's patches, SGLang $sglang_version with $(( ${#patches[@]} / 2 )) of slime's patches, sglang-router $router_version)"
