"""What the benchmarks that drive anb-web over HTTP share: a free loopback
port, JSON requests, waiting for the server, and a signed-in player. The
standard library only."""

import json
import socket
import time
import urllib.request

PASSWORD = "S3cure!pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(base: str, path: str, body: dict | None = None, token: str | None = None) -> dict | list:
    """GET `path` (POST with `body` as JSON), with a bearer `token`; the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"content-type": "application/json"})
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=60) as response:
        return json.loads(response.read() or b"{}")


def wait_until_up(base: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            request(base, "/api/health")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def player(base: str, email: str, last_name: str = "Bench") -> str:
    """Signs `email` up (in Cali) and logs in; the access token."""
    request(base, "/api/auth/signup", {"first_name": "Bench", "last_name": last_name, "email": email, "password1": PASSWORD,
                                       "password2": PASSWORD, "city": "Cali", "country": "Colombia"})
    return request(base, "/api/auth/login", {"email": email, "password": PASSWORD})["access_token"]
