#!/usr/bin/env bash
# hyperfine: /bin/true in a busybox bundle through `berth runtime run` (the
# native executor) vs `runc run` and `crun run`, same config.json, same run.
# Usage: host/runtime/bench/run-true.sh [path/to/berth]   (root; hyperfine, runc, crun, busybox)
set -euo pipefail
BERTH=${1:-$(dirname "$0")/../../../target/release/berth}
BERTH=$(readlink -f "$BERTH")
for b in hyperfine runc crun busybox; do command -v "$b" >/dev/null || { echo "skip: $b missing"; exit 0; }; done
[ "$(id -u)" = 0 ] || { echo "skip: needs root"; exit 0; }
T=$(mktemp -d /tmp/berth-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bundle/rootfs/bin" "$T/bundle/rootfs/proc" "$T/bundle/rootfs/dev" "$T/bundle/rootfs/sys"
cp "$(command -v busybox)" "$T/bundle/rootfs/bin/busybox"
ln -s busybox "$T/bundle/rootfs/bin/true"
(cd "$T/bundle" && runc spec)
# /bin/true, no terminal; the rest is runc's default spec.
python3 - "$T/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
json.dump(c, open(p, "w"), indent=2)
PY
# crun 1.8 refuses a hybrid cgroup layout: run the whole comparison in a mount
# namespace where the empty cgroup2 tree is detached (all three alike).
unshare -m --propagation private sh -c "
  umount -l /sys/fs/cgroup/unified 2>/dev/null || true
  cd '$T/bundle'
  hyperfine -N --warmup 5 --runs ${RUNS:-100} --export-markdown '$T/result.md' \
    -n 'berth runtime run' '$BERTH --root $T/berth runtime run --bundle $T/bundle bench-berth' \
    -n 'runc run' 'runc --root $T/runc run --bundle $T/bundle bench-runc' \
    -n 'crun run' 'crun --root $T/crun run --bundle $T/bundle bench-crun'
"
cat "$T/result.md"
