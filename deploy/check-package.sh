#!/usr/bin/env bash
# Checks the Debian package: its contents and dependencies (dpkg-deb),
# lintian (every override explained), the systemd units
# (systemd-analyze verify), and that the binaries taken from the package
# start with the environment the units give them and answer.
#
# Usage: deploy/check-package.sh path/to/anb_*.deb
# Run by `make test` on the package built from the debug binaries, and by
# `make package` on the release one.
set -euo pipefail
deb=$(realpath "${1:?usage: check-package.sh path/to/anb_VERSION_ARCH.deb}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        if kill "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check-package: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# 1. Contents.
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for file in ./usr/bin/anb-web ./usr/bin/anb-worker ./lib/systemd/system/anb-web.service ./lib/systemd/system/anb-worker.service \
    ./usr/share/doc/anb/anb.env.example ./usr/share/doc/anb/copyright ./usr/share/doc/anb/changelog.Debian.gz \
    ./usr/share/lintian/overrides/anb ./usr/share/doc/anb/README.md ./usr/share/doc/anb/operations.md; do
    grep -qxF "$file" <<<"$contents" || fail "$file is not in the package"
done
for script in postinst prerm postrm; do
    dpkg-deb -I "$deb" "$script" >/dev/null 2>&1 || fail "no $script"
done
ok "contents: both binaries, both units, the env example, docs, maintainer scripts"

# 2. Dependencies: what the worker's pipeline needs at run time.
depends=$(dpkg-deb -f "$deb" Depends)
for package in gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
    gstreamer1.0-libav fonts-dejavu-core adduser ca-certificates libgstreamer1.0-0; do
    grep -qw -- "$package" <<<"$depends" || fail "Depends lacks $package: $depends"
done
ok "dependencies: $depends"

# 3. lintian: no error or warning; every override has its reason above it.
if ! report=$(lintian --fail-on error,warning "$deb" 2>&1); then
    grep -v 'running with root privileges' <<<"$report" >&2
    fail "lintian reports errors or warnings (above)"
fi
awk '/^anb: / { if (!explained) { print "unexplained override: " $0; bad = 1 } next }
     /^# / { explained = 1; next }
     /^$/ { explained = 0 }
     END { exit bad }' "$here/debian/lintian-overrides" || fail "every lintian override needs a comment saying why"
ok "lintian: clean, $(grep -c '^anb: ' "$here/debian/lintian-overrides") overrides, each explained"

# 4. The units, as systemd reads them, with the binaries they name.
root="$work/root"
dpkg-deb -x "$deb" "$root"
mkdir -p "$root/etc/anb" "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp "$root/usr/share/doc/anb/anb.env.example" "$root/etc/anb/anb.env"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp "$root"/lib/systemd/system/anb-*.service "$root/etc/systemd/system/"
verify=$(systemd-analyze verify --root="$root" --man=no "$root"/etc/systemd/system/anb-web.service "$root"/etc/systemd/system/anb-worker.service 2>&1 || echo "exit $?")
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
ok "systemd-analyze verify: both units"

# 5. The binaries from the package start with the units' environment: the
#    unit's Environment= lines, then its EnvironmentFile (here a
#    single-machine one: the AWS example names buckets and secrets), and answer.
unit_env() { sed -n 's/^Environment=//p' "$root/lib/systemd/system/$1.service"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)
web_metrics_port=$(free_port)
# A host runs one unit; each reads its own /etc/anb/anb.env.
cat >"$work/anb-web.env" <<EOF
ANB_HTTP_ADDR=127.0.0.1:$port
ANB_WORKERS=0
ANB_METRICS=emf
ANB_METRICS_ADDR=127.0.0.1:$web_metrics_port
ANB_LOG_FORMAT=json
RUST_LOG=info
EOF
cat >"$work/anb-worker.env" <<EOF
ANB_METRICS=emf
ANB_METRICS_ADDR=127.0.0.1:$metrics_port
ANB_LOG_FORMAT=json
RUST_LOG=info
EOF
start() { # unit: runs its binary with the unit's environment, the data directory moved to the scratch space
    local unit=$1
    (
        set -a
        while IFS= read -r line; do export "${line?}"; done < <(unit_env "$unit")
        # shellcheck disable=SC1090
        . "$work/$unit.env"
        export ANB_DATA_DIR="$work/data"
        exec "$root/usr/bin/$unit"
    ) >"$work/$unit.out" 2>"$work/$unit.log" &
    pids+=($!)
}
wait_for() { # url, what
    for _ in $(seq 1 150); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    cat "$work"/*.log >&2
    fail "$2 did not answer at $1"
}
mkdir -p "$work/data"
start anb-web
wait_for "http://127.0.0.1:$port/api/health" "anb-web from the package"
[ "$(curl -fsS "http://127.0.0.1:$port/api/health")" = '{"status":"ok"}' ] || fail "health is not ok"
grep -q '"message":"serving"' "$work/anb-web.log" || fail "anb-web did not log as JSON: $(head -3 "$work/anb-web.log")"
ok "anb-web from the package answers /api/health with the units' environment"
grep -q 'http_requests_total' <(curl -fsS "http://127.0.0.1:$web_metrics_port/metrics") || fail "no web metrics on ANB_METRICS_ADDR"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics")" = 404 ] || fail "/metrics answered on the public port"
ok "anb-web serves /metrics on ANB_METRICS_ADDR only, never on its public port"
start anb-worker
wait_for "http://127.0.0.1:$metrics_port/metrics" "anb-worker from the package"
grep -q 'jobs_started\|process_resident_memory_bytes' <(curl -fsS "http://127.0.0.1:$metrics_port/metrics") || fail "no worker metrics"
ok "anb-worker from the package runs and answers /metrics"
