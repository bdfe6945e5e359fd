#!/usr/bin/env bash
# Runs a command in a private network namespace whose only interface is its own loopback, when this machine allows
# one (root or CAP_SYS_ADMIN, util-linux `unshare`, iproute2 `ip`). Ray's servers (GCS, raylet, agents, workers) and
# torch's TCPStore listen on every interface whatever node address they are given; inside the namespace "every
# interface" is loopback, so nothing the tests start is reachable from another host and nothing can reach one.
# Where no namespace can be made, the command runs as is, with a note. KEEL_NETNS=0 turns this off.
set -euo pipefail
if [ "${KEEL_NETNS:-1}" != 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null &&
  unshare --net true 2>/dev/null; then
  echo "[keel] running in a private network namespace (loopback only)" >&2
  # KEEL_PRIVATE_NETNS tells the tests they may configure this namespace (src/local/slurm.ts).
  exec unshare --net -- bash -c 'ip link set lo up && KEEL_PRIVATE_NETNS=1 exec "$@"' keel-netns "$@"
fi
echo "[keel] note: no private network namespace here; Ray's and torch's servers listen on every interface" >&2
exec "$@"
