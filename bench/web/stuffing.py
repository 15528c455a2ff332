"""The cheater's script of issue 24 against the release anb-web, and what
honest users feel meanwhile. Two runs in one invocation, each on a fresh
SQLite data directory and a free loopback port:

1. `--limits off` (sign-up limits lifted, as before the change) and
   `--limits on` (the defaults: 10 sign-ups an hour per address, 50 per
   network): from one address, a script makes 200 accounts and has each vote
   for one player's video. Printed: accounts made, votes counted, sign-ups
   refused with 429, and the time it took.
2. With the limits on: the median and p95 of 40 log-ins of an existing
   account, first on an idle server (the baseline of the same run), then
   while 8 threads keep sending sign-ups that are refused.

    python3 bench/web/stuffing.py            # after cargo build --release --bins

The processed video is made public in the database directly (processing is
measured elsewhere); everything else goes through the HTTP API."""

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from api import PASSWORD, free_port, player, request, wait_until_up  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve()
WEB = TARGET / "release" / "anb-web"


def status_of(base: str, path: str, body: dict | None = None, token: str | None = None) -> int:
    try:
        request(base, path, body, token)
        return 200
    except urllib.error.HTTPError as error:
        return error.code


def serve(scratch: Path, limits: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, ANB_DATA_DIR=str(scratch), ANB_WORKERS="0", ANB_HTTP_ADDR=f"127.0.0.1:{port}", RUST_LOG="warn")
    if not limits:
        env.update(ANB_SIGNUP_PER_ADDRESS="1000000", ANB_SIGNUP_PER_NETWORK="1000000")
    web = subprocess.Popen([WEB], env=env, stdout=subprocess.DEVNULL, stderr=open(scratch / "web.log", "w"))
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base)
    return web, base


def publish(scratch: Path, email: str) -> int:
    """A processed video of `email`'s player, written into the database."""
    db = sqlite3.connect(scratch / "anb.db")
    with db:
        (owner,) = db.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()
        cur = db.execute(
            "INSERT INTO videos (owner_id, title, status, task_id, original_key, processed_key, uploaded_at, processed_at, votes, city_key) "
            "VALUES (?, 'Triple', 'processed', 'bench-task', 'uploaded/b.mp4', 'processed/b.mp4', "
            "'2026-12-07 12:00:00+00:00', '2026-12-07 12:00:00+00:00', 0, 'cali')", (owner,))
        db.execute("UPDATE users SET first_public_video = ? WHERE id = ?", (cur.lastrowid, owner))
    return cur.lastrowid


def stuff(limits: bool, accounts: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="anb-bench-stuffing-") as scratch:
        scratch = Path(scratch)
        web, base = serve(scratch, limits)
        try:
            player(base, "cheat@bench.example", "Cheat")
            video = publish(scratch, "cheat@bench.example")
            made = refused = votes = 0
            started = time.monotonic()
            for n in range(accounts):
                email = f"sock{n}@bench.example"
                code = status_of(base, "/api/auth/signup", {"first_name": "Sock", "last_name": str(n), "email": email,
                                                            "password1": PASSWORD, "password2": PASSWORD, "city": "Cali",
                                                            "country": "Colombia"})
                if code == 429:
                    refused += 1
                    continue
                made += 1
                token = request(base, "/api/auth/login", {"email": email, "password": PASSWORD})["access_token"]
                votes += status_of(base, f"/api/public/videos/{video}/vote", {}, token) == 200
            elapsed = time.monotonic() - started
            ranking = request(base, "/api/public/rankings")
            return {"limits": "on" if limits else "off", "tried": accounts, "accounts": made, "refused_429": refused,
                    "votes": votes, "player_votes": ranking[0]["votes"], "seconds": round(elapsed, 1)}
        finally:
            web.terminate()
            web.wait()


def log_ins(base: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.monotonic()
        request(base, "/api/auth/login", {"email": "fan@bench.example", "password": PASSWORD})
        times.append((time.monotonic() - started) * 1000)
    return times


def latency_under_refused_flood(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="anb-bench-stuffing-") as scratch:
        scratch = Path(scratch)
        web, base = serve(scratch, True)
        try:
            player(base, "fan@bench.example", "Fan")
            for k in range(10):  # use up this address's sign-ups
                status_of(base, "/api/auth/signup", {"first_name": "F", "last_name": str(k), "email": f"f{k}@bench.example",
                                                     "password1": PASSWORD, "password2": PASSWORD, "city": "Cali",
                                                     "country": "Colombia"})
            idle = log_ins(base, n)
            stop, sent, codes = threading.Event(), [0], {}

            def flood(t: int) -> None:
                k = 0
                while not stop.is_set():
                    code = status_of(base, "/api/auth/signup", {"first_name": "X", "last_name": "Y",
                                                                "email": f"flood{t}-{k}@bench.example", "password1": PASSWORD,
                                                                "password2": PASSWORD, "city": "Cali", "country": "Colombia"})
                    codes[code] = codes.get(code, 0) + 1
                    sent[0] += 1
                    k += 1

            threads = [threading.Thread(target=flood, args=(t,)) for t in range(8)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(1)
            flooded = log_ins(base, n)
            stop.set()
            for thread in threads:
                thread.join()
            rate = sent[0] / (time.monotonic() - started)

            def summary(times: list[float]) -> str:
                ordered = sorted(times)
                return f"median {statistics.median(ordered):.0f} ms, p95 {ordered[int(len(ordered) * 0.95) - 1]:.0f} ms"

            return {"idle": summary(idle), "during_flood": summary(flooded),
                    "ratio_of_medians": round(statistics.median(flooded) / statistics.median(idle), 2),
                    "flood_per_second": round(rate), "flood_answers": codes}
        finally:
            web.terminate()
            web.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--log-ins", type=int, default=40)
    args = parser.parse_args()
    if not WEB.exists():
        sys.exit(f"{WEB} not found: cargo build --release --bins")
    for limits in (False, True):
        print(stuff(limits, args.accounts), flush=True)
    print({"log_ins": latency_under_refused_flood(args.log_ins)}, flush=True)


if __name__ == "__main__":
    main()
