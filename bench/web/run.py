#!/usr/bin/env python3
"""The web tier under load: goose scenarios against the release anb-web.

For each database (SQLite, PostgreSQL) and data-set size it seeds a fresh
database (anb-bench-seed), starts the release anb-web on loopback with no
workers, and for each scenario and user count runs anb-bench-load with a
ramp and a hold, while sampling the server's CPU and RSS from /proc. It
prints one markdown table (requests/s, p50/p95/p99, errors, server CPU and
peak RSS; the load generator shares the 2 cores) and writes the raw rows to
target/bench-results/web.json; with --plot, the latency over time of the
voting-week runs as docs/web-latency.png.

  cargo build --release --bins
  python3 bench/web/run.py --db sqlite postgres --size small \\
      --scenario votingweek --cache memory off --users 100 300 600 1000

--cache redis uses ANB_BENCH_REDIS_URL, else the Redis on 127.0.0.1:6379,
else a throwaway redis-server.
"""

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from api import free_port  # noqa: E402
from plotting import plotting_python  # noqa: E402
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve()
RELEASE = TARGET / "release"
RESULTS = TARGET / "bench-results"
VENV = TARGET / "bench-venv"
PLOT = ROOT / "docs" / "web-latency.png"
POSTGRES: str | None = os.environ.get("ANB_BENCH_POSTGRES_URL")
TICKS = os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """CPU seconds and peak RSS of a process, sampled every 0.25 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop, self.peak_kb = pid, threading.Event(), 0
        self.cpu_start = self.cpu()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def run(self) -> None:
        while not self.stop.wait(0.25):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))

    def finish(self) -> tuple[float, int]:
        self.stop.set()
        self.join()
        return self.cpu() - self.cpu_start, self.peak_kb // 1024


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_url() -> str:
    """ANB_BENCH_POSTGRES_URL, else the server on 127.0.0.1:5432 if one
    answers, else a throwaway cluster from the installed PostgreSQL binaries
    (stopped and removed when the run ends)."""
    global POSTGRES
    if POSTGRES:
        return POSTGRES
    if answers(5432):
        POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
        return POSTGRES
    import atexit
    import glob
    import shutil
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        sys.exit("no PostgreSQL server: set ANB_BENCH_POSTGRES_URL, or install the postgresql package (make test-deps does)")
    bindir = Path(initdb[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="anb-bench-pg-"))
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if run_as:
        shutil.chown(root, "postgres")
    port = free_port()
    subprocess.run(run_as + [bindir / "initdb", "-D", root / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(run_as + [bindir / "pg_ctl", "-D", root / "data", "-l", root / "log", "-w", "-o",
                             f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, stdout=subprocess.DEVNULL)

    def stop() -> None:
        subprocess.run(run_as + [bindir / "pg_ctl", "-D", root / "data", "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)
    atexit.register(stop)
    POSTGRES = f"postgres://postgres@127.0.0.1:{port}/postgres"
    return POSTGRES


class Database:
    """A fresh, seeded database of one kind and size."""

    def __init__(self, kind: str, size: str, scratch: Path):
        self.kind = kind
        if kind == "sqlite":
            self.url = f"sqlite://{scratch}/anb.db?mode=rwc"
        else:
            self.admin = postgres_url()
            self.url = self.admin.rsplit("/", 1)[0] + "/anb_bench_web"
            self.psql(f"DROP DATABASE IF EXISTS anb_bench_web WITH (FORCE)")
            self.psql("CREATE DATABASE anb_bench_web")
        out = subprocess.run([RELEASE / "anb-bench-seed", "--database-url", self.url, "--size", size],
                             check=True, capture_output=True, text=True)
        print(out.stdout.strip(), file=sys.stderr)

    def psql(self, sql: str) -> None:
        subprocess.run(["psql", "-q", self.admin, "-c", sql], check=True)

    def drop(self) -> None:
        if self.kind == "postgres":
            self.psql("DROP DATABASE IF EXISTS anb_bench_web WITH (FORCE)")


def redis_url() -> str:
    """ANB_BENCH_REDIS_URL, else a Redis on 127.0.0.1:6379 if one answers,
    else a throwaway redis-server (stopped when the run ends)."""
    url = os.environ.get("ANB_BENCH_REDIS_URL")
    if url:
        return url
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(5) == b"+PONG":
                return "redis://127.0.0.1:6379"
    except OSError:
        pass
    port = free_port()
    server = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    THROWAWAY.append(server)
    time.sleep(0.5)
    return f"redis://127.0.0.1:{port}"


THROWAWAY: list[subprocess.Popen] = []


def serve(database: Database, scratch: Path, cache: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, ANB_DATA_DIR=str(scratch), ANB_DATABASE_URL=database.url, ANB_WORKERS="0",
               ANB_HTTP_ADDR=f"127.0.0.1:{port}", RUST_LOG="warn", ANB_CACHE=cache,
               ANB_JWT_SECRET="bench-web-secret-of-at-least-32-characters",
               # One load generator on one address: the sign-up limits would refuse its users.
               ANB_SIGNUP_PER_ADDRESS="1000000", ANB_SIGNUP_PER_NETWORK="1000000")
    if cache == "redis":
        # A prefix of the run's own: nothing cached by an earlier run is read.
        env.update(ANB_REDIS_URL=redis_url(), ANB_REDIS_PREFIX=f"anb-bench-{port}-{time.time_ns()}")
    web = subprocess.Popen([RELEASE / "anb-web"], env=env, stdout=subprocess.DEVNULL, stderr=open(scratch / "web.log", "w"))
    host = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return web, host
        except OSError:
            time.sleep(0.05)
    web.kill()
    sys.exit(f"anb-web did not start: {(scratch / 'web.log').read_text()}")


def attack(host: str, scenario: str, users: int, ramp: int, hold: int, size: str, scratch: Path, web: subprocess.Popen,
           log: Path | None) -> dict:
    report = scratch / f"{scenario}-{users}.json"
    args = [RELEASE / "anb-bench-load", "--host", host, "--scenarios", scenario, "--quiet",
            "--test-plan", f"{users},{ramp}s;{users},{hold}s;0,0s", "--report-file", str(report)]
    if log:
        args += ["--request-log", str(log), "--request-format", "csv"]
    sampler = Sampler(web.pid)
    sampler.start()
    started = time.monotonic()
    subprocess.run(args, check=True, cwd=scratch, env=dict(os.environ, ANB_BENCH_SIZE=size), stdout=subprocess.DEVNULL)
    cpu, rss = sampler.finish()
    wall = time.monotonic() - started
    data = json.loads(report.read_text())
    total = next(r for r in data["raw_request_metrics"] if r["name"] == "Aggregated")
    times = next(r for r in data["raw_response_metrics"] if r["name"] == "Aggregated")
    requests = total["number_of_requests"]
    # The public pages' worst p99 (goose keeps percentiles per request name).
    reads = [r["percentile_99"] for r in data["raw_response_metrics"]
             if r["name"].startswith("/api/public/") and not r["name"].endswith("/vote")]
    return {
        "p99_public_pages": max(reads) if reads else None,
        "scenario": scenario, "users": users, "requests": requests, "rps": round(total["requests_per_second"]),
        "p50": times["percentile_50"], "p95": times["percentile_95"], "p99": times["percentile_99"],
        "errors": total["number_of_failures"], "server_cpu_percent": round(100 * cpu / wall),
        "server_cpu_ms_per_request": round(1000 * cpu / max(requests, 1), 3), "server_peak_rss_mb": rss,
    }


def latency_series(log: Path) -> list[tuple[int, float]]:
    """p99 of each second of a request log (CSV), in ms."""
    import csv
    buckets: dict[int, list[int]] = {}
    with log.open() as f:
        for row in csv.DictReader(f):
            buckets.setdefault(int(row["elapsed"]) // 1000, []).append(int(row["response_time"]))
    series = []
    for second in sorted(buckets):
        times = sorted(buckets[second])
        series.append((second, times[min(len(times) - 1, int(0.99 * len(times)))]))
    return series


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
    t, p = zip(*r["series"])
    ax.plot(t, p, label=f"{r['db']}, cache {r['cache']}, {r['users']} users: {r['rps']} req/s, p99 {r['p99']} ms")
ax.set_xlabel("seconds since the ramp started")
ax.set_ylabel("p99 latency of each second (ms)")
ax.set_title("anb-web (release, 2 cores shared with goose): voting-week mix")
ax.set_yscale("log")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2])
"""
    data = RESULTS / "web-series.json"
    data.write_text(json.dumps(rows))
    subprocess.run([str(python), "-c", script, str(data), str(PLOT)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--size", nargs="+", default=["small"], choices=["small", "large"])
    parser.add_argument("--scenario", nargs="+", default=["votingweek"], choices=["votingweek", "rankings", "publiclist"])
    parser.add_argument("--users", type=int, nargs="+", default=[100, 300, 600, 1000])
    parser.add_argument("--ramp", type=int, default=10, help="seconds to reach the users")
    parser.add_argument("--hold", type=int, default=30, help="seconds at the users")
    parser.add_argument("--cache", nargs="+", default=["memory"], choices=["memory", "redis", "off"],
                        help="the page cache of anb-web (ANB_CACHE)")
    parser.add_argument("--plot", action="store_true", help="write docs/web-latency.png from the voting-week runs")
    args = parser.parse_args()
    for binary in ["anb-web", "anb-bench-seed", "anb-bench-load"]:
        if not (RELEASE / binary).exists():
            sys.exit(f"{RELEASE / binary} not found: cargo build --release --bins")
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, series = [], []
    for size in args.size:
        for kind in args.db:
            with tempfile.TemporaryDirectory(prefix="anb-bench-web-") as scratch:
                scratch = Path(scratch)
                database = Database(kind, size, scratch)
                try:
                    for scenario, cache, users in itertools.product(args.scenario, args.cache, args.users):
                        print(f"{kind} {size} {scenario} cache {cache} {users} users ...", file=sys.stderr)
                        # A server of its own for each run: its peak RSS is this run's.
                        web, host = serve(database, scratch, cache)
                        log = scratch / "requests.csv" if args.plot and scenario == "votingweek" else None
                        try:
                            row = attack(host, scenario, users, args.ramp, args.hold, size, scratch, web, log)
                        finally:
                            web.terminate()
                            web.wait()
                        row.update(db=kind, size=size, cache=cache)
                        rows.append(row)
                        if log:
                            series.append({**row, "series": latency_series(log)})
                            log.unlink()
                finally:
                    database.drop()
    for server in THROWAWAY:
        server.terminate()
    (RESULTS / "web.json").write_text(json.dumps(rows, indent=1))
    print("| database | size | scenario | cache | users | req/s | p50 ms | p95 ms | p99 ms | p99 public pages ms | errors | server CPU "
          "| CPU ms/request | server peak RSS |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['db']} | {r['size']} | {r['scenario']} | {r['cache']} | {r['users']} | {r['rps']} | {r['p50']} | {r['p95']} | "
              f"{r['p99']} | {r['p99_public_pages']} | "
              f"{r['errors']} | {r['server_cpu_percent']} % | {r['server_cpu_ms_per_request']} | {r['server_peak_rss_mb']} MB |")
    if series:
        plot(series)


if __name__ == "__main__":
    main()
