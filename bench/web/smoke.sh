#!/usr/bin/env bash
# The smoke scenario of the web benchmarks, with thresholds (part of
# `make test`): the small data set seeded into a fresh SQLite database, the
# given build of anb-web on a free loopback port, and 8 goose users of the
# voting-week mix for 30 s. Fails when a request fails or the p99 passes
# 500 ms (a debug build on 2 shared cores is far under it). Usage:
#   bench/web/smoke.sh TARGET/debug   (relative or absolute, from any directory)
set -euo pipefail
bin="${1:?usage: bench/web/smoke.sh DIRECTORY_OF_THE_BINARIES}"
# Absolute from here on: the load generator runs in the work directory.
bin="$(cd "$bin" && pwd)"
work="$(mktemp -d)"
web_pid=""
cleanup() {
  [ -n "$web_pid" ] && kill "$web_pid" 2>/dev/null && wait "$web_pid" 2>/dev/null
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="sqlite://$work/anb.db?mode=rwc"

"$bin/anb-bench-seed" --database-url "$url" --size small
# One load generator on one address: the sign-up limits would refuse its users.
ANB_DATA_DIR="$work" ANB_DATABASE_URL="$url" ANB_WORKERS=0 ANB_HTTP_ADDR="127.0.0.1:$port" RUST_LOG=warn \
  ANB_SIGNUP_PER_ADDRESS=1000000 ANB_SIGNUP_PER_NETWORK=1000000 \
  "$bin/anb-web" >"$work/web.log" 2>&1 &
web_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break
  kill -0 "$web_pid" 2>/dev/null || { cat "$work/web.log"; echo "anb-web did not start" >&2; exit 1; }
  sleep 0.1
done
# goose exits non-zero when a threshold fails.
(cd "$work" && "$bin/anb-bench-load" --host "http://127.0.0.1:$port" --scenarios votingweek \
  --users 8 --increase-rate 8 --run-time 30s --quiet --no-reset-metrics \
  --threshold "error-rate<1%" --threshold "p99<500ms" --report-file "$work/smoke.json") | grep -A6 "=== THRESHOLDS"
python3 - "$work/smoke.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
times = {(r["method"], r["name"]): r for r in report["raw_response_metrics"]}
print(f"{'request':<44} {'count':>7} {'failed':>6} {'req/s':>7} {'p50':>5} {'p95':>5} {'p99':>5}  (ms)")
failed = 0
for r in report["raw_request_metrics"]:
    t = times[(r["method"], r["name"])]
    failed += r["number_of_failures"]
    print(f"{r['method'] + ' ' + r['name']:<44} {r['number_of_requests']:>7} {r['number_of_failures']:>6} "
          f"{r['requests_per_second']:>7.0f} {t['percentile_50']:>5} {t['percentile_95']:>5} {t['percentile_99']:>5}")
names = {r["name"] for r in report["raw_request_metrics"] if r["number_of_requests"] > 0}
expected = {"/api/public/videos", "/api/public/videos?city", "/api/public/rankings", "/api/public/rankings?city",
            "/api/videos/{id}", "/api/public/videos/{id}/vote", "/api/auth/login", "/api/auth/signup"}
assert expected <= names, f"routes never requested: {expected - names}"
assert failed == 0, f"{failed} requests failed"
PY
echo "smoke scenario: every route answered, 0 failed, thresholds passed"
