#!/usr/bin/env python3
"""Many log-ins at once against the release anb-web: its peak and final RSS
and the time they took, with glibc's moving mmap threshold and with the
fixed one anb-web sets (MALLOC_MMAP_THRESHOLD_=4194304).

  cargo build --release --bins
  python3 bench/web/logins.py --logins 200
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Database, serve  # noqa: E402

PASSWORD = "Bench-Clave-2026"


def log_in(host: str, person: int) -> None:
    body = json.dumps({"email": f"fan{person}@bench.example", "password": PASSWORD}).encode()
    request = urllib.request.Request(f"{host}/api/auth/login", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert answer.status == 200, answer.status


def status(pid: int, field: str) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    args = parser.parse_args()
    print("| mmap threshold | log-ins at once | took | server peak RSS | server RSS after |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="anb-bench-logins-") as scratch:
        scratch = Path(scratch)
        database = Database("sqlite", "small", scratch)
        # MALLOC_ARENA_MAX set: anb-web keeps this environment instead of restarting with its own.
        for label, threshold in [("glibc's moving one", None), ("fixed at 4 MB (anb-web's)", "4194304")]:
            os.environ["MALLOC_ARENA_MAX"] = "2"
            os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
            if threshold:
                os.environ["MALLOC_MMAP_THRESHOLD_"] = threshold
            web, host = serve(database, scratch)
            try:
                threads = [threading.Thread(target=log_in, args=(host, n)) for n in range(1, args.logins + 1)]
                started = time.monotonic()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                took = time.monotonic() - started
                print(f"| {label} | {args.logins} | {took:.1f} s | {status(web.pid, 'VmHWM')} MB | {status(web.pid, 'VmRSS')} MB |")
            finally:
                web.terminate()
                web.wait()


if __name__ == "__main__":
    main()
