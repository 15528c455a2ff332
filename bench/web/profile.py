#!/usr/bin/env python3
"""Where the web server spends its CPU on one scenario: perf samples of the
release anb-web while anb-bench-load runs, summed by symbol.

  cargo build --release --bins
  python3 bench/web/profile.py --scenario publiclist --cache memory --users 600
"""

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RELEASE, Database, serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--size", default="small", choices=["small", "large"])
    parser.add_argument("--scenario", default="publiclist", choices=["votingweek", "rankings", "publiclist"])
    parser.add_argument("--cache", default="memory", choices=["memory", "redis", "off"])
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="anb-bench-profile-") as scratch:
        scratch = Path(scratch)
        database = Database(args.db, args.size, scratch)
        web, host = serve(database, scratch, args.cache)
        try:
            load = subprocess.Popen([RELEASE / "anb-bench-load", "--host", host, "--scenarios", args.scenario, "--quiet",
                                     "--test-plan", f"{args.users},5s;{args.users},{args.seconds + 5}s;0,0s"],
                                    cwd=scratch, stdout=subprocess.DEVNULL, env={"ANB_BENCH_SIZE": args.size, "PATH": "/usr/bin:/bin"})
            time.sleep(8)
            subprocess.run(["perf", "record", "-q", "-F", "999", "-p", str(web.pid), "-o", scratch / "perf.data", "--",
                            "sleep", str(args.seconds)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            load.wait()
        finally:
            web.terminate()
            web.wait()
            database.drop()
        report = subprocess.run(["perf", "report", "-i", scratch / "perf.data", "--no-children", "--sort", "sym", "--stdio"],
                                capture_output=True, text=True).stdout
        lines = [l for l in report.splitlines() if l.strip() and not l.startswith("#")]
        print(f"CPU samples of anb-web ({args.db}, {args.size}, {args.scenario}, cache {args.cache}, {args.users} users), by symbol:")
        for line in lines[:args.top]:
            print("  " + line.strip()[:150])


if __name__ == "__main__":
    main()
