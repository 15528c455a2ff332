#!/usr/bin/env bash
# Time from a 201 upload answer to `processed` for one 40 s 1080p30 video with
# audio, through the real release `anb-web` (SQLite, local files, 1 embedded
# worker) on a free loopback port. Prints one JSON line.
#
#   bench/upload.sh [SECONDS]      # default 40
set -euo pipefail
[ -n "${CARGO_TARGET_DIR:-}" ] && CARGO_TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR") && export CARGO_TARGET_DIR
cd "$(dirname "$0")/.."
secs="${1:-40}"
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
cargo build --release --bins -q
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# Input: moving test pattern with film-like noise (about 8 Mbit/s) and AAC audio.
ffmpeg -v error -f lavfi -i "testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t" -f lavfi -i "sine=frequency=440" \
  -t "$secs" -c:v libx264 -preset veryfast -b:v 8M -pix_fmt yuv420p -c:a aac "$work/input.mp4"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ANB_DATA_DIR="$work/data" ANB_HTTP_ADDR="127.0.0.1:$port" ANB_WORKERS=1 RUST_LOG=warn "$target/release/anb-web" 2>"$work/server.log" &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/api/health" >/dev/null && break; sleep 0.1; done

curl -sf "$base/api/auth/signup" -H 'content-type: application/json' -d '{"first_name":"Bench","last_name":"Mark",
  "email":"bench@example.com","password1":"S3cure!pass","password2":"S3cure!pass","city":"Bogotá","country":"Colombia"}' >/dev/null
token=$(curl -sf "$base/api/auth/login" -H 'content-type: application/json' -d '{"email":"bench@example.com","password":"S3cure!pass"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

start=$(date +%s.%N)
curl -sf "$base/api/videos/upload" -H "authorization: Bearer $token" -F title=bench -F "video_file=@$work/input.mp4" >/dev/null
accepted=$(date +%s.%N)
while :; do
  status=$(curl -sf "$base/api/videos" -H "authorization: Bearer $token" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["status"])')
  [ "$status" = processed ] || [ "$status" = failed ] && break
  sleep 0.2
done
done_at=$(date +%s.%N)
python3 - "$secs" "$(stat -c %s "$work/input.mp4")" "$start" "$accepted" "$done_at" "$status" <<'PY'
import json, sys
secs, size, start, accepted, done, status = sys.argv[1:]
print(json.dumps({"input_seconds": int(secs), "input_mb": round(int(size) / 1e6, 1), "status": status,
                  "upload_seconds": round(float(accepted) - float(start), 2),
                  "processing_seconds": round(float(done) - float(accepted), 2)}))
PY
