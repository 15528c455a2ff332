#!/usr/bin/env bash
# Where one transcode spends its CPU: perf samples of `anb-worker transcode`
# (as a worker runs it at full load: one decoder and encoder thread), summed
# by library. Usage: bench/profile.sh [input.mp4]
# Without an input it uses bench/results/inputs/landscape-50MB.mp4, which
# `python3 bench/worker.py` generates (bench/latency.py makes the same file
# under $CARGO_TARGET_DIR/bench-results/inputs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
worker="$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")/release/anb-worker"
input=${1:-$root/bench/results/inputs/landscape-50MB.mp4}
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
[ -x "$worker" ] || { echo "$worker not found: cargo build --release --bins" >&2; exit 1; }
[ -f "$input" ] || { echo "$input not found: run python3 bench/worker.py once, or name an input" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
perf record -q -F 499 -o "$work/perf.data" -- "$worker" transcode --threads 1 "$input" "$work/out.mp4" >/dev/null 2>&1
echo "CPU samples of one job by library ($(basename "$input")):"
perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | awk '/^ +[0-9.]+%/ && $1+0 >= 0.5 {printf "  %7s  %s\n", $1, $2}'
echo "hottest symbols:"
perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null | awk '/^ +[0-9.]+%/ && n++ < 8 {print "  " $0}'

# CPU seconds of each stage on its own, one thread each, as command lines
# anyone can rerun: decoding, scaling and the bare encode next to the job.
cpu() {
    local label=$1; shift
    /usr/bin/time -f "%U %S" -o "$work/time" "$@" >/dev/null 2>&1 || { echo "  $label: failed" >&2; return; }
    awk -v label="$label" '{printf "  %-58s %5.1f CPU s\n", label, $1 + $2}' "$work/time"
}
first30="identity eos-after=900"
decode="filesrc location=$input ! qtdemux ! h264parse ! avdec_h264 max-threads=1"
scale="videoscale method=catrom add-borders=true ! video/x-raw,width=1280,height=720,pixel-aspect-ratio=1/1"
x264="x264enc speed-preset=veryfast subme=1 me=dia pass=qual quantizer=23 bframes=3 vbv-buf-capacity=0 threads=1"
echo "stages, 30 s of the input:"
# shellcheck disable=SC2086 # the pipelines are word lists on purpose
{
cpu "ffmpeg: decode" ffmpeg -v error -threads 1 -t 30 -i "$input" -an -f null -
cpu "ffmpeg: decode + scale (swscale bicubic)" ffmpeg -v error -threads 1 -t 30 -i "$input" -an -vf scale=1280:720 -f null -
cpu "GStreamer: decode" gst-launch-1.0 -q $decode ! $first30 ! fakesink
cpu "GStreamer: decode + scale (videoscale catrom)" gst-launch-1.0 -q $decode ! $scale ! $first30 ! fakesink
cpu "GStreamer: decode + scale + x264 + mp4mux (no cards, no watermark)" gst-launch-1.0 -q $decode ! $scale ! $first30 ! $x264 ! mp4mux ! filesink location="$work/bare.mp4"
cpu "anb-worker transcode --threads 1 (the whole job)" "$worker" transcode --threads 1 "$input" "$work/job.mp4"
cpu "the same, without the cards (--card-seconds 0)" "$worker" transcode --threads 1 --card-seconds 0 "$input" "$work/job.mp4"
cpu "the same, with videoscale (--scale-method videoscale:catrom)" "$worker" transcode --threads 1 --scale-method videoscale:catrom "$input" "$work/job.mp4"
}
