#!/usr/bin/env python3
"""Worker tier benchmark: jobs injected straight into the queue, drained by
one `anb-worker` process running 1, 2 and 4 jobs at once.

    python3 bench/worker.py                       # 8 jobs (4 x 50 MB, 4 x 100 MB), at 1, 2 and 4 at once
    python3 bench/worker.py --jobs 4 --concurrency 1 2
    MALLOC_ARENA_MAX=16 python3 bench/worker.py --concurrency 2 --no-plot   # glibc's own arena limit on 2 cores

No web tier: for each run the script makes a fresh data directory, lets
`anb-worker migrate` create the schema, and writes N videos (`uploaded`) with
their jobs into the database queue, and their originals into the file store,
exactly what an upload leaves behind. Then it starts the release
`anb-worker` with ANB_WORKERS=K and samples the queue depth every 0.5 s until
every video is processed. Time per job comes from the worker's own log
("processing started" to "video processed"). Peak RSS of the whole worker
process comes from wait4(2).

Results: a Markdown table on stdout, bench/results/worker.json, and the
queue depth over time as docs/worker-queue-depth.png (matplotlib, installed
into bench/.venv on first use).
"""

import argparse
import datetime as dt
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plotting import plotting_python  # noqa: E402
from transcode import INPUTS, ROOT, WORKER, make_input  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PLOT = ROOT / "docs" / "worker-queue-depth.png"
VENV = ROOT / "bench" / ".venv"
LOG_LINE = re.compile(r"^(\S+Z)\s+INFO\s+job\{[^}]*video_id=(\d+)[^}]*\}.*?: (processing started|video processed)")


def inputs() -> list[Path]:
    """The 50 MB and 100 MB landscape inputs, generated once and kept."""
    cache = RESULTS / "inputs"
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("landscape-50MB", "landscape-100MB"):
        path = cache / f"{name}.mp4"
        if not path.exists():
            print(f"generating {path.name} ...", file=sys.stderr)
            make_input(path, *INPUTS[name])
        paths.append(path)
    return paths


def inject(data: Path, sources: list[Path], jobs: int) -> None:
    """N uploaded videos and their queued jobs, as the upload flow writes them."""
    env = {**os.environ, "ANB_DATA_DIR": str(data), "RUST_LOG": "warn"}
    subprocess.run([str(WORKER), "migrate"], env=env, check=True)
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    db = sqlite3.connect(data / "anb.db")
    user = db.execute(
        "INSERT INTO users (first_name, last_name, email, password_hash, city, city_key, country, created_at) "
        "VALUES ('Bench', 'Player', 'bench@example.com', '$argon2id$x', 'Cali', 'cali', 'Colombia', ?)", (now,)).lastrowid
    for n in range(jobs):
        task = str(uuid.uuid4())
        key = f"uploaded/{task}.mp4"
        target = data / "files" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(sources[n % len(sources)], target)
        video = db.execute(
            "INSERT INTO videos (owner_id, title, status, task_id, original_key, uploaded_at, votes) "
            "VALUES (?, ?, 'uploaded', ?, ?, ?, 0)", (user, f"bench {n}", task, key, now)).lastrowid
        db.execute(
            "INSERT INTO jobs (task_id, video_id, state, visible_at, receive_count, created_at) VALUES (?, ?, 'queued', 0, 0, ?)",
            (task, video, int(time.time() * 1000)))
    db.commit()
    db.close()


def run(sources: list[Path], jobs: int, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="anb-bench-worker-") as tmp:
        data = Path(tmp) / "data"
        inject(data, sources, jobs)
        log = Path(tmp) / "worker.log"
        env = {**os.environ, "ANB_DATA_DIR": str(data), "ANB_WORKERS": str(concurrency), "RUST_LOG": "info"}
        started = time.monotonic()
        with open(log, "w") as stderr:
            proc = subprocess.Popen([str(WORKER)], env=env, stderr=stderr, stdout=subprocess.DEVNULL)
        db = sqlite3.connect(data / "anb.db")
        depth = []
        while True:
            waiting = db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()[0]
            done = db.execute("SELECT COUNT(*) FROM videos WHERE status IN ('processed', 'failed')").fetchone()[0]
            depth.append((round(time.monotonic() - started, 2), waiting))
            if done == jobs:
                break
            if proc.poll() is not None:
                sys.exit(f"anb-worker exited early:\n{log.read_text()}")
            time.sleep(0.5)
        failed = db.execute("SELECT COUNT(*) FROM videos WHERE status = 'failed'").fetchone()[0]
        db.close()
        proc.send_signal(signal.SIGTERM)
        # wait4 reaps the worker and hands back its resource usage.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            sys.exit(f"anb-worker exited with {proc.returncode} on SIGTERM:\n{log.read_text()}")
        starts, ends = {}, {}
        for line in log.read_text().splitlines():
            m = LOG_LINE.match(line)
            if m:
                at = dt.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
                (starts if m.group(3) == "processing started" else ends)[int(m.group(2))] = at
        per_job = sorted(ends[v] - starts[v] for v in ends if v in starts)
        span = max(ends.values()) - min(starts.values())
        return {
            "concurrency": concurrency, "jobs": jobs, "failed": failed,
            "videos_per_min": round(jobs / span * 60, 2), "drain_seconds": round(span, 1),
            "p50_seconds": round(statistics.median(per_job), 1),
            "p95_seconds": round(per_job[min(len(per_job) - 1, round(0.95 * (len(per_job) - 1)))], 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "depth": depth,
        }


def plot(rows: list[dict]) -> None:
    python = plotting_python(VENV)
    script = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = json.load(open(sys.argv[1]))
fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
for r in rows:
    t, d = zip(*r["depth"])
    ax.step(t, d, where="post", label=f"{r['concurrency']} at once: {r['videos_per_min']} videos/min")
ax.set_xlabel("seconds since the worker started")
ax.set_ylabel("jobs in the queue (waiting or in progress)")
ax.set_title(f"anb-worker draining {rows[0]['jobs']} jobs (50 MB and 100 MB, 1080p30, 45 s)")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[2])
"""
    data = RESULTS / "worker.json"
    subprocess.run([str(python), "-c", script, str(data), str(PLOT)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-plot", action="store_true", help="leave docs/worker-queue-depth.png as it is")
    args = parser.parse_args()
    if not WORKER.exists():
        sys.exit(f"{WORKER} not found: cargo build --release --bins")
    if subprocess.run(["which", "ffmpeg"], capture_output=True).returncode:
        sys.exit("ffmpeg is missing: make deps")
    sources = inputs()
    rows = []
    for concurrency in args.concurrency:
        print(f"{args.jobs} jobs, {concurrency} at once ...", file=sys.stderr)
        rows.append(run(sources, args.jobs, concurrency))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "worker.json").write_text(json.dumps(rows))
    if not args.no_plot:
        plot(rows)
    print(f"\n{os.cpu_count()} cores, {args.jobs} jobs (half 50 MB, half 100 MB), release anb-worker\n")
    print("| jobs at once | videos/min | drain time | p50 per job | p95 per job | peak RSS (process) | CPU time | failed |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['videos_per_min']} | {r['drain_seconds']} s | {r['p50_seconds']} s | "
              f"{r['p95_seconds']} s | {r['peak_rss_mb']} MB | {r['cpu_seconds']} s | {r['failed']} |")
    if not args.no_plot:
        print(f"\nqueue depth over time: {PLOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
