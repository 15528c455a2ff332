#!/usr/bin/env bash
# Query plans of the public listing and the rankings on PostgreSQL, on a
# seeded database (20 000 players in 50 cities, 200 000 videos of which
# 60 % processed, 500 000 votes). Usage:
#   bench/explain.sh [postgres://postgres@127.0.0.1:5432/postgres]
# It creates (and afterwards drops) the database anb_explain on that server;
# the schema comes from `anb-worker migrate`, the same migrations as always.
set -euo pipefail
[ -n "${CARGO_TARGET_DIR:-}" ] && CARGO_TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR") && export CARGO_TARGET_DIR
cd "$(dirname "$0")/.."
admin="${1:-${ANB_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}"
url="${admin%/*}/anb_explain"
# Any build of anb-worker will do: it only runs the migrations.
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
worker="$target/release/anb-worker"
[ -x "$worker" ] || worker="$target/debug/anb-worker"
[ -x "$worker" ] || cargo build --bin anb-worker

psql -q "$admin" -c "DROP DATABASE IF EXISTS anb_explain WITH (FORCE)" -c "CREATE DATABASE anb_explain"
trap 'psql -q "$admin" -c "DROP DATABASE IF EXISTS anb_explain WITH (FORCE)"' EXIT
ANB_DATABASE_URL="$url" ANB_DATA_DIR="$(mktemp -d)" RUST_LOG=warn "$worker" migrate

psql -q "$url" <<'SQL'
INSERT INTO users (first_name, last_name, email, password_hash, city, city_key, country, created_at)
SELECT 'P' || i, 'L' || i, 'p' || i || '@example.com', '$argon2id$x', 'City ' || (i % 50), 'city ' || (i % 50), 'Colombia', now()
FROM generate_series(1, 20000) AS i;
INSERT INTO videos (owner_id, title, status, task_id, original_key, processed_key, uploaded_at, processed_at, votes)
SELECT (i % 20000) + 1, 'Video ' || i, CASE WHEN i % 5 < 3 THEN 'processed' ELSE 'uploaded' END,
       md5(i::text), 'uploaded/' || md5(i::text) || '.mp4',
       CASE WHEN i % 5 < 3 THEN 'processed/' || md5(i::text) || '.mp4' END, now(),
       CASE WHEN i % 5 < 3 THEN now() END, CASE WHEN i % 5 < 3 THEN (i * 7919) % 500 ELSE 0 END
FROM generate_series(1, 200000) AS i;
INSERT INTO votes (user_id, video_id, created_at)
SELECT (i % 20000) + 1, ((i / 20000) * 7919) % 200000 + 1, now() FROM generate_series(0, 499999) AS i;
-- What the publication and vote transactions keep current, computed at once.
UPDATE videos v SET city_key = u.city_key FROM users u WHERE u.id = v.owner_id AND v.status = 'processed';
UPDATE users u SET public_votes = t.total, first_public_video = t.first
FROM (SELECT owner_id, SUM(votes) AS total, MIN(id) AS first FROM videos WHERE status = 'processed' GROUP BY owner_id) t
WHERE t.owner_id = u.id;
ANALYZE;
SQL

explain() {
  echo "### $1"
  echo
  echo '```'
  psql -qAt "$url" -c "EXPLAIN (ANALYZE, COSTS OFF, BUFFERS OFF) $2"
  echo '```'
  echo
}
# The statements SeaOrmVideoRepository::list_public and
# SeaOrmVoteRepository::rankings send, with their parameters filled in.
explain "Public listing, first page" \
  "SELECT v.id, v.title, u.first_name, u.last_name, u.city, v.processed_key, v.votes FROM videos v JOIN users u ON u.id = v.owner_id WHERE v.status = 'processed' ORDER BY v.votes DESC, v.id ASC LIMIT 20 OFFSET 0"
explain "Public listing, one city" \
  "SELECT v.id, v.title, u.first_name, u.last_name, u.city, v.processed_key, v.votes FROM videos v JOIN users u ON u.id = v.owner_id WHERE v.status = 'processed' AND v.city_key = 'city 7' ORDER BY v.votes DESC, v.id ASC LIMIT 20 OFFSET 0"
explain "Rankings, everyone" \
  "SELECT u.first_name, u.last_name, u.city, u.public_votes AS votes FROM users u WHERE u.first_public_video IS NOT NULL ORDER BY u.public_votes DESC, u.first_public_video ASC, u.id ASC LIMIT 10 OFFSET 0"
explain "Rankings, one city" \
  "SELECT u.first_name, u.last_name, u.city, u.public_votes AS votes FROM users u WHERE u.first_public_video IS NOT NULL AND u.city_key = 'city 7' ORDER BY u.public_votes DESC, u.first_public_video ASC, u.id ASC LIMIT 10 OFFSET 0"
