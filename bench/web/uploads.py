#!/usr/bin/env python3
"""Many large uploads at once: the web server's memory while it takes them.

Generates one valid upload just under the 100 MB limit (1080p30 H.264 with
noise, about 19 Mbit/s, 40 s; kept under target/bench-results/ for the next
run), starts the release anb-web on loopback (SQLite, local files, no
workers), signs up one player per upload, then sends every upload at once
with curl. While they run it samples the server's RSS and CPU from /proc.
Prints one markdown table row: uploads, answered 201, wall time, the
aggregate rate, the server's CPU and its peak RSS (issue 13 asks for under
200 MB at 50 uploads).

  cargo build --release --bins
  python3 bench/web/uploads.py --uploads 50
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RELEASE, RESULTS, Sampler  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from api import free_port, player, wait_until_up  # noqa: E402

LIMIT = 104_857_600


def make_input() -> Path:
    """The upload, made once: 40 s of 1080p30 at about 19 Mbit/s."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "upload-95mb.mp4"
    if path.exists() and path.stat().st_size < LIMIT:
        return path
    partial = path.with_suffix(".partial.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,noise=alls=20:allf=t",
                    "-t", "40", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "19M", "-maxrate", "19M", "-bufsize", "38M",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(partial)], check=True)
    size = partial.stat().st_size
    if size >= LIMIT:
        sys.exit(f"the generated upload is {size} bytes, over the limit")
    partial.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=50)
    args = parser.parse_args()
    if not (RELEASE / "anb-web").exists():
        sys.exit(f"{RELEASE / 'anb-web'} not found: cargo build --release --bins")
    video = make_input()
    print(f"input: {video} ({video.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="anb-bench-uploads-") as scratch:
        scratch = Path(scratch)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = dict(os.environ, ANB_DATA_DIR=str(scratch), ANB_WORKERS="0", ANB_HTTP_ADDR=f"127.0.0.1:{port}", RUST_LOG="warn",
                   ANB_SIGNUP_PER_ADDRESS="1000000", ANB_SIGNUP_PER_NETWORK="1000000")
        web = subprocess.Popen([RELEASE / "anb-web"], env=env, stdout=subprocess.DEVNULL, stderr=open(scratch / "web.log", "w"))
        try:
            wait_until_up(base)
            tokens = [player(base, f"uploader{i}@example.com", f"Loader{i}") for i in range(args.uploads)]
            sampler = Sampler(web.pid)
            sampler.start()
            started = time.monotonic()

            def upload(token: str) -> str:
                out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"authorization: Bearer {token}",
                                      "-F", "title=Bench upload", "-F", f"video_file=@{video};type=video/mp4",
                                      base + "/api/videos/upload"], capture_output=True, text=True)
                return out.stdout.strip()

            with concurrent.futures.ThreadPoolExecutor(max_workers=args.uploads) as pool:
                codes = list(pool.map(upload, tokens))
            wall = time.monotonic() - started
            cpu, rss = sampler.finish()
        finally:
            web.terminate()
            web.wait()
    accepted = codes.count("201")
    total_mb = args.uploads * video.stat().st_size / 1e6
    row = {"uploads": args.uploads, "accepted": accepted, "codes": sorted(set(codes)), "wall_s": round(wall, 1),
           "mb_per_s": round(total_mb / wall), "server_cpu_s": round(cpu, 1), "server_peak_rss_mb": rss}
    (RESULTS / "web-uploads.json").write_text(json.dumps(row, indent=1))
    print("| uploads at once | size each | answered 201 | wall | aggregate | server CPU | server peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.uploads} | {video.stat().st_size / 1e6:.1f} MB | {accepted} | {row['wall_s']} s | {row['mb_per_s']} MB/s | "
          f"{row['server_cpu_s']} s | {rss} MB |")
    if accepted != args.uploads:
        sys.exit(f"only {accepted} of {args.uploads} uploads were accepted: {codes}")


if __name__ == "__main__":
    main()
