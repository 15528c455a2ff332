#!/usr/bin/env bash
# The dependency rule of docs/architecture.md, checked on the resolved crate
# graph (`cargo tree`, no build): the core stays pure, a web-only build links
# no GStreamer, and the worker links no web framework. Run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
failed=0

# Crates (normal dependencies, transitively) of a package, one name a line.
crates() { "$cargo" tree --quiet -e normal --prefix none --format '{p}' "$@" | awk '{print $1}' | sort -u; }

check() { # what, pattern, cargo tree arguments...
    local what=$1 pattern=$2; shift 2
    local found
    found=$(crates "$@" | grep -E "^($pattern)$" | tr '\n' ' ' || true)
    if [ -n "$found" ]; then
        echo "layer check failed: $what, but it depends on: $found" >&2
        failed=1
    else
        echo "ok: $what"
    fi
}

io='sea-orm|sea-orm-migration|sqlx|sqlx-core|aws-config|aws-sdk-s3|aws-sdk-sqs|aws-sdk-sesv2|lettre|gstreamer|gstreamer-sys|poem|poem-openapi|reqwest|hyper|tokio-postgres|redis|lapin|rdkafka|multer'
check "anb-domain does no I/O" "$io" -p anb-domain
check "anb-application does no I/O" "$io" -p anb-application
brokers='lapin|amq-protocol|rdkafka|rdkafka-sys|aws-config|aws-sdk-s3|aws-sdk-sqs|aws-sdk-sesv2|aws-sdk-secretsmanager|redis'
check "anb-web built for a web-only host with no brokers (--no-default-features) links no GStreamer, broker, AWS SDK or Redis client" \
    "gstreamer|gstreamer-sys|glib|glib-sys|$brokers" -p anb-web --no-default-features
check "anb-web as make run builds it (one machine) links no broker, AWS SDK or Redis client" "$brokers" \
    -p anb-web --no-default-features --features embedded-worker
check "anb-web for a web-only host on AWS links no GStreamer, RabbitMQ, Kafka or Redis client" \
    'gstreamer|gstreamer-sys|glib|glib-sys|lapin|rdkafka|rdkafka-sys|redis' -p anb-web --no-default-features --features aws
check "anb-worker links no web framework" 'poem|poem-openapi|multer' -p anb-worker
exit "$failed"
