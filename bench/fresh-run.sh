#!/usr/bin/env bash
# What a newcomer waits on a fresh machine: clones this repository into a
# new directory and times `make run` there (apt packages, crate download,
# release build, start) until /api/health answers on 127.0.0.1:8080, then
# stops the server. Meant for a machine with nothing installed yet (nothing
# in ~/.cargo/registry, the Debian packages missing): elsewhere it times
# what is left to do. Port 8080 must be free. Prints one JSON line; the
# whole log stays in the printed directory. Usage: bench/fresh-run.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/anb-fresh-run.XXXXXX)"
git clone -q "$repo" "$work/clone"
cd "$work/clone"
start=$(date +%s.%N)
make run >"$work/run.log" 2>&1 &
pid=$!
stop() { kill -INT "$pid" 2>/dev/null || true; pkill -INT -f "$work/clone/target/release/anb-web" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap stop EXIT
until curl -fsS http://127.0.0.1:8080/api/health >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || { echo "make run exited; see $work/run.log" >&2; exit 1; }
  sleep 0.5
done
serving=$(date +%s.%N)
cargo=$(grep -o 'Finished `release` profile.* in .*' "$work/run.log" | sed 's/.* in //')
python3 - "$start" "$serving" "$cargo" "$(grep -c '^ *Compiling' "$work/run.log" || true)" "$work" <<'PY'
import json, sys
start, serving = map(float, sys.argv[1:3])
print(json.dumps({"to_serving_seconds": round(serving - start, 1), "cargo": sys.argv[3], "crates_compiled": int(sys.argv[4]), "log": sys.argv[5] + "/run.log"}))
PY
