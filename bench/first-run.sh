#!/usr/bin/env bash
# How long `make run` takes on this machine before it serves, from nothing
# built: the release build `make run` does (what one machine needs), in an
# empty target directory, with cargo's --timings report, then the server
# started on a free port until /api/health answers. The Debian packages are
# assumed installed (`make deps`) and the crates downloaded (`cargo fetch`):
# on a fresh machine add their time (apt and the download). Usage:
#   bench/first-run.sh [FEATURES...]   (default: what `make run` builds)
# Prints one JSON line; the timings report stays in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
features=("$@")
[ ${#features[@]} -gt 0 ] || features=(--no-default-features --features embedded-worker)
out="$(mktemp -d /tmp/anb-first-run.XXXXXX)"
data="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$data" "$out/target"
}
trap cleanup EXIT
cargo fetch --quiet
start=$(date +%s.%N)
CARGO_TARGET_DIR="$out/target" cargo build --release -p anb-web "${features[@]}" --timings 2>"$out/build.log"
built=$(date +%s.%N)
cp -r "$out/target/cargo-timings" "$out/"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ANB_DATA_DIR="$data" ANB_HTTP_ADDR="127.0.0.1:$port" "$out/target/release/anb-web" >"$out/serve.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/api/health" >/dev/null
serving=$(date +%s.%N)
units=$(grep -c '^ *Compiling' "$out/build.log" || true)
python3 - "$start" "$built" "$serving" "$units" "$out" "${features[*]}" <<'PY'
import json, sys
start, built, serving = map(float, sys.argv[1:4])
print(json.dumps({"features": sys.argv[6], "crates_compiled": int(sys.argv[4]), "cargo_seconds": round(built - start, 1),
                  "to_serving_seconds": round(serving - start, 1), "timings": sys.argv[5] + "/cargo-timings"}))
PY
