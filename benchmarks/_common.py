"""Helpers shared by the benchmarks: gunicorn servers on a free loopback port, HTTP clients, percentiles, tables.

No Django import here: the benchmark process configures Django itself (or not) before using these.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RESULTS = REPO / "benchmarks" / "results"

BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


# --- statistics ----------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of per-request latencies given in seconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


# --- output ----------------------------------------------------------------------------------------------------
def _cell(value: Any, fmt: str | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt:
        return format(value, fmt)
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(columns: Sequence[tuple[str, str, str | None]], rows: Iterable[Mapping[str, Any]]) -> str:
    """A markdown table; ``columns`` are (key, header, format spec or None)."""
    body = [[_cell(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    right = [i > 0 for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True))
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right, strict=True))
    sep += "|"
    return "\n".join([line(headers), sep, *(line(r) for r in body)])


def write_json(name: str, payload: Any) -> Path:
    """Write ``benchmarks/results/<name>.json`` (git-ignored) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str, allow_nan=False) + "\n")
    return path


def finite(value: Any) -> Any:
    """NaN -> None, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- gunicorn --------------------------------------------------------------------------------------------------
@dataclass
class GunicornServer:
    """``gunicorn storefront_demo.wsgi`` with sync workers on a free 127.0.0.1 port (race-free: the listening
    socket is created here and handed over as ``fd://``). Use as a context manager or call start()/stop()."""

    env: Mapping[str, str]
    workers: int = 1
    name: str = "server"
    app: str = "storefront_demo.wsgi:application"
    timeout: int = 120
    port: int = 0
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    _log: Any = field(default=None, repr=False)

    def start(self, ready_path: str = "/", ready_timeout: float = 60.0) -> GunicornServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(2048)
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        self._log = tempfile.NamedTemporaryFile(prefix=f"bench-{self.name}-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)
        cmd = [
            str(VENV_BIN / "gunicorn"),
            "--bind", f"fd://{sock.fileno()}",
            "--workers", str(self.workers),
            "--worker-class", "sync",
            "--timeout", str(self.timeout),
            "--log-level", "warning",
            "--no-control-socket",  # gunicorn 27's control socket is one path per user: servers side by side clash
            self.app,
        ]
        env = {**os.environ, **self.env}
        try:
            self.process = subprocess.Popen(
                cmd, cwd=REPO, env=env, pass_fds=(sock.fileno(),), stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the server in order
            )
        finally:
            sock.close()
        self.wait_ready(ready_path, ready_timeout)
        return self

    def wait_ready(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gunicorn {self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", path, headers={"User-Agent": BROWSER_UA})
                status = conn.getresponse().status
                conn.close()
                if status < 500:
                    return
                last = RuntimeError(f"HTTP {status}")
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn {self.name} not ready after {timeout}s ({last}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM lets workers finish the request in hand), SIGKILL after ``timeout``."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the master and its workers only
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove_log(self) -> None:
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- HTTP client -------------------------------------------------------------------------------------------------
class Client:
    """Sequential HTTP/1.1 requests on one ``http.client`` connection, reopened when the server closes it
    (gunicorn's sync workers answer ``Connection: close``). Times each request from send to last byte."""

    def __init__(self, port: int, headers: Mapping[str, str] | None = None, timeout: float = 60.0):
        self.port = port
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, bytes, http.client.HTTPResponse, float]:
        all_headers = {**self.headers, **(headers or {})}
        for attempt in range(2):
            start = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise
                continue
            elapsed = time.perf_counter() - start
            if response.will_close:
                self.conn.close()
            return response.status, data, response, elapsed
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def cookies_from(response: http.client.HTTPResponse) -> dict[str, str]:
    """name -> value of the response's Set-Cookie headers (enough for a benchmark's cookie jar)."""
    jar = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]
    return jar


def cookie_header(jar: Mapping[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


# --- subprocesses ------------------------------------------------------------------------------------------------
def manage(args: Sequence[str], env: Mapping[str, str]) -> None:
    """Run ``manage.py <args>`` with the given extra environment; raise with its output on failure."""
    result = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args], cwd=REPO, env={**os.environ, **env},
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def logger(prefix: str) -> Callable[[str], None]:
    """A timestamped progress logger on stderr (stdout is kept for the result table)."""
    tag = f"{prefix} " if prefix else ""

    def log(message: str) -> None:
        print(f"[{tag}{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    return log


def database_url(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``."""
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
