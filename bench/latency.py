#!/usr/bin/env python3
"""The wait one user sees: from an upload's 201 to `processed`, against the
ffmpeg command line on the same file, in the same run.

Starts the release anb-web with its defaults (SQLite, local files, one
embedded worker) on a free loopback port, signs up one player, then for each
input (45 s of 1080p30, landscape and portrait, made once with ffmpeg as
bench/transcode.py makes them) and each run: uploads it with curl, polls the
video every 0.1 s until it is `processed`, and runs bench/transcode.py's
ffmpeg command line on the same file. Prints a markdown table of both times
and their ratio (ffmpeg's time / ours: above 1 means the user waits less
than the ffmpeg command line takes), each run and the median; then where
our wait went, step by step, from the worker's and the transcoder's logs.

  cargo build --release --bins
  python3 bench/latency.py --runs 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api import free_port, player, request, wait_until_up  # noqa: E402
from transcode import INPUTS, TARGET, ffmpeg_baseline, make_input  # noqa: E402

WEB = TARGET / "release" / "anb-web"
INPUT_DIR = TARGET / "bench-results" / "inputs"
CASES = ["landscape-50MB", "portrait-50MB"]


def wait_for_us(base: str, token: str, video: Path, title: str) -> float:
    """Seconds from the upload's 201 to `processed`."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"authorization: Bearer {token}",
                          "-F", f"title={title}", "-F", f"video_file=@{video};type=video/mp4", base + "/api/videos/upload"],
                         capture_output=True, text=True, check=True)
    answered = time.monotonic()
    if out.stdout.strip() != "201":
        sys.exit(f"upload answered {out.stdout.strip()}")
    mine = request(base, "/api/videos", token=token)
    video_id = next(v["video_id"] for v in mine if v["title"] == title)
    while True:
        detail = request(base, f"/api/videos/{video_id}", token=token)
        if detail["status"] == "processed":
            return time.monotonic() - answered
        if detail["status"] == "failed":
            sys.exit(f"{title} failed: {detail}")
        if time.monotonic() - answered > 600:
            sys.exit(f"{title} still {detail['status']} after 10 minutes")
        time.sleep(0.1)


def ffmpeg_time(video: Path, work: Path) -> float:
    started = time.monotonic()
    subprocess.run(ffmpeg_baseline(video, work / "ffmpeg-out.mp4"), check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not WEB.exists():
        sys.exit(f"{WEB} not found: cargo build --release --bins")
    INPUT_DIR.mkdir(parents=True, exist_ok=True)
    inputs = {}
    for name in CASES:
        path = INPUT_DIR / f"{name}.mp4"
        if not path.exists():
            print(f"making {path} ...", file=sys.stderr)
            make_input(path, *INPUTS[name])
        inputs[name] = path
    rows = []
    with tempfile.TemporaryDirectory(prefix="anb-bench-latency-") as work:
        work = Path(work)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # The worker's and the transcoder's step timings, as JSON lines.
        env = dict(os.environ, ANB_DATA_DIR=str(work / "data"), ANB_HTTP_ADDR=f"127.0.0.1:{port}", ANB_LOG_FORMAT="json",
                   RUST_LOG="warn,anb_application::worker=info,anb_gstreamer=info")
        log = work / "web.log"
        web = subprocess.Popen([WEB], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        try:
            wait_until_up(base)
            token = player(base, "latency@example.com")
            for name, path in inputs.items():
                for run in range(1, args.runs + 1):
                    ours = wait_for_us(base, token, path, f"{name} run {run}")
                    theirs = ffmpeg_time(path, work)
                    rows.append({"input": name, "run": run, "ours_s": round(ours, 2), "ffmpeg_s": round(theirs, 2),
                                 "ratio": round(theirs / ours, 2), "steps": last_steps(log)})
                    print(f"{name} run {run}: ours {ours:.2f} s, ffmpeg {theirs:.2f} s", file=sys.stderr)
        finally:
            web.terminate()
            web.wait()
    (TARGET / "bench-results" / "latency.json").write_text(json.dumps(rows, indent=1))
    print("| input | run | upload's 201 → processed (ours) | ffmpeg command line | ratio (ffmpeg / ours) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['input']} | {r['run']} | {r['ours_s']} s | {r['ffmpeg_s']} s | {r['ratio']} |")
    for name in inputs:
        mine = [r for r in rows if r["input"] == name]
        ours, theirs = statistics.median(r["ours_s"] for r in mine), statistics.median(r["ffmpeg_s"] for r in mine)
        print(f"| {name} | median | {ours:.2f} s | {theirs:.2f} s | {theirs / ours:.2f} |")
    print()
    print("Where our wait went (medians over the runs, ms; from the worker's and the transcoder's logs):")
    print()
    print("| input | " + " | ".join(label for label, _ in STEPS) + " |")
    print("|---|" + "---:|" * len(STEPS))
    for name in inputs:
        mine = [r["steps"] for r in rows if r["input"] == name and r["steps"]]
        cells = [f"{statistics.median(s[key] for s in mine):.0f}" if mine else "?" for _, key in STEPS]
        print(f"| {name} | " + " | ".join(cells) + " |")


# The steps between the 201 and `processed`, as logged (field names of the
# "processing started", "transcoded" and "video processed" events).
STEPS = [
    ("queue pick-up", "waited_ms"),
    ("copy in", "fetch_ms"),
    ("probe", "probe_ms"),
    ("pipeline start (to the first encoded frame)", "first_frame_ms"),
    ("transcode", "transcode_ms"),
    ("store", "store_ms"),
    ("status and the rest", "rest_ms"),
    ("upload row to processed", "since_upload_ms"),
]


def last_steps(log: Path) -> dict:
    """The step timings of the last job in the log."""
    steps = {}
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        message = event.get("message")
        if message == "transcoded":
            steps = {k: event[k] for k in ("probe_ms", "first_frame_ms") if k in event}
        elif message == "video processed":
            steps.update({k: event[k] for k in ("waited_ms", "fetch_ms", "transcode_ms", "store_ms", "since_upload_ms")})
    if "since_upload_ms" not in steps:
        return {}
    accounted = sum(steps.get(k, 0) for k in ("waited_ms", "fetch_ms", "transcode_ms", "store_ms"))
    steps["rest_ms"] = steps["since_upload_ms"] - accounted
    return steps


if __name__ == "__main__":
    main()
