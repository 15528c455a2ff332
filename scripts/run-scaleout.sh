#!/usr/bin/env bash
# `make run-scaleout`: the AWS shape on this machine, for a person to try.
# A throwaway PostgreSQL cluster, moto (S3 + SQS), `anb-worker provision`,
# HAProxy on :8080 (as the ALB: health checks on /api/health, a failed
# connection tried on the other server) over two anb-web (no embedded
# workers) on :8081 and :8082, and two anb-worker.
# Ctrl-C stops everything and removes the cluster and emulator state.
set -euo pipefail
# CARGO_TARGET_DIR, as cargo reads it, is relative to the caller's directory.
[ -n "${CARGO_TARGET_DIR:-}" ] && CARGO_TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR") && export CARGO_TARGET_DIR
cd "$(dirname "$0")/.."

target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
bin="$target/release"
moto="$(realpath -m "${ANB_MOTO_SERVER:-$target/test-venv/bin/moto_server}")"
root="$(mktemp -d /tmp/anb-scaleout.XXXXXX)"
chmod 755 "$root"   # the cluster may belong to the postgres user
pids=()

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -f "$root/pg/data/postmaster.pid" ]; then $as_pg "$pg_bin/pg_ctl" -D "$root/pg/data" -m fast -w stop >/dev/null || true; fi
  logs="${TMPDIR:-/tmp}/anb-scaleout-logs"
  mkdir -p "$logs" && cp "$root"/*.log "$logs"/ 2>/dev/null || true
  rm -rf "$root"
  echo "stopped; everything removed but the logs, kept in $logs"
}
trap stop INT TERM EXIT

# PostgreSQL: initdb refuses to run as root, so the cluster then belongs to `postgres`.
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL server binaries not found: run 'make test-deps'" >&2; exit 1; }
as_pg=""
mkdir -p "$root/pg"
if [ "$(id -u)" = 0 ]; then chown -R postgres: "$root/pg"; as_pg="runuser -u postgres --"; fi
pg_port="$(free_port)"
$as_pg "$pg_bin/initdb" -D "$root/pg/data" -A trust -U postgres --no-sync >/dev/null
$as_pg "$pg_bin/pg_ctl" -D "$root/pg/data" -l "$root/pg/log" -w \
  -o "-p $pg_port -k $root/pg -c listen_addresses=127.0.0.1" start >/dev/null
echo "postgres    postgres://postgres@127.0.0.1:$pg_port/postgres"

moto_port="$(free_port)"
"$moto" -H 127.0.0.1 -p "$moto_port" >"$root/moto.log" 2>&1 &
pids+=($!)
until (echo >"/dev/tcp/127.0.0.1/$moto_port") 2>/dev/null; do sleep 0.2; done
echo "moto        http://127.0.0.1:$moto_port (S3 and SQS)"

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export ANB_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export ANB_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export ANB_STORAGE=s3 ANB_S3_BUCKET=anb-videos ANB_QUEUE=sqs
export RUST_LOG="${RUST_LOG:-info}"

eval "$("$bin/anb-worker" --data-dir "$root/provision" provision)"
export ANB_SQS_QUEUE_URL
echo "queue       $ANB_SQS_QUEUE_URL"
echo "dead letter $ANB_SQS_DEAD_LETTER_URL"

for i in 1 2; do
  port=$((8080 + i))
  ANB_WORKERS=0 ANB_HTTP_ADDR="127.0.0.1:$port" ANB_DATA_DIR="$root/web$i" ANB_BEHIND_PROXY=true \
    ANB_PUBLIC_BASE_URL=http://127.0.0.1:8080 ANB_METRICS_ADDR="127.0.0.1:$((9463 + i))" \
    "$bin/anb-web" 2>"$root/web$i.log" &
  pids+=($!)
  ANB_DATA_DIR="$root/worker$i" "$bin/anb-worker" 2>"$root/worker$i.log" &
  pids+=($!)
done
for port in 8081 8082; do
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break; sleep 0.2; done
  echo "anb-web     http://127.0.0.1:$port"
done
# The load balancer, configured as tests/scaleout/rolling.rs drills it
# (testkit/src/haproxy.rs): replace a server (SIGTERM, start it again on
# its port) and no request fails.
[ -x /usr/sbin/haproxy ] || { echo "haproxy not found: run 'make test-deps'" >&2; exit 1; }
cat >"$root/haproxy.cfg" <<CFG
global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response
frontend web
  bind 127.0.0.1:8080
  default_backend anb
backend anb
  balance roundrobin
  option httpchk GET /api/health
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2
  server web1 127.0.0.1:8081 check
  server web2 127.0.0.1:8082 check
CFG
/usr/sbin/haproxy -db -f "$root/haproxy.cfg" 2>"$root/haproxy.log" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:8080/api/health" >/dev/null 2>&1 && break; sleep 0.2; done
echo "HAProxy     http://127.0.0.1:8080 (one address for both; Swagger UI at /docs)"
echo "anb-worker  x2; logs: $root/{web,worker}{1,2}.log, $root/haproxy.log"
echo "Ctrl-C stops everything."
# Until Ctrl-C, or until one process exits (its log says why; stop() prints
# where the logs were before removing them).
wait -n "${pids[@]}" || true
