#!/usr/bin/env bash
# Runs the browser tests against a fresh anb-web: a free port, a throwaway data
# directory, stopped afterwards. Usage: tests/browser/run.sh path/to/anb-web
# Extra environment (ANB_SCREENSHOTS, ANB_CLIP_1080P, ANB_CLIP_SHORT, ANB_CHROMIUM) passes through.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:?usage: run.sh path/to/anb-web}")
chromium=${ANB_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "run.sh: $chromium is missing (apt-get install chromium)" >&2; exit 1; }
command -v ffmpeg >/dev/null || [ -n "${ANB_CLIP_1080P:-}" ] || { echo "run.sh: ffmpeg is needed to make the test clips" >&2; exit 1; }
cd "$here"
[ -f node_modules/playwright-core/package.json ] || npm ci --no-audit --no-fund
data=$(mktemp -d)
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
# Every test signs up from 127.0.0.1: the sign-up limits would refuse the later ones.
# Votes need a verified address, as in production: the tests read the verification
# links from the messages the file mailer writes under $data/mail.
ANB_HTTP_ADDR="127.0.0.1:$port" ANB_DATA_DIR="$data" ANB_SIGNUP_PER_ADDRESS=100000 ANB_SIGNUP_PER_NETWORK=1000000 \
  ANB_MAIL=file ANB_VOTE_REQUIRES_VERIFIED_EMAIL=true \
  "$bin" >"$data/anb-web.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
node -e "
  const until = Date.now() + 60000;
  (async () => {
    for (;;) {
      try { if ((await fetch('http://127.0.0.1:$port/api/health')).ok) return; } catch {}
      if (Date.now() > until) { console.error('run.sh: anb-web did not become healthy'); process.exit(1); }
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
" || { tail -n 50 "$data/anb-web.log" >&2; exit 1; }
status=0
ANB_BASE_URL="http://127.0.0.1:$port" ANB_MAIL_DIR="$data/mail" node --test page.test.mjs || status=$?
[ "$status" = 0 ] || { echo "--- last lines of the anb-web log" >&2; tail -n 40 "$data/anb-web.log" >&2; }
exit "$status"
