"""Production-configuration fixtures: a real Celery worker process on PostgreSQL and Redis.

The integration run (``make test-prod``) sets DATABASE_URL to PostgreSQL and TEST_CELERY_BROKER_URL to Redis.
Without them these tests fail with a message saying so: a missing service must never pass silently.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _require_production() -> str:
    broker = os.environ.get("TEST_CELERY_BROKER_URL")
    if connection.vendor != "postgresql" or not broker:
        pytest.fail(
            "Integration tests need PostgreSQL (DATABASE_URL) and a Redis broker (TEST_CELERY_BROKER_URL); "
            "run them with `make test-prod`, which sets both."
        )
    return broker


@pytest.fixture
def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3")


@pytest.fixture
def stream_key(redis_url: str):
    import redis

    key = f"personalization:test:{uuid.uuid4().hex}"
    yield key
    client = redis.Redis.from_url(redis_url)
    for name in client.scan_iter(f"{key}*"):
        client.delete(name)


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path, redis_url, stream_key, settings):
    """A real ``celery worker`` on the test database; yields a client app to send tasks with."""
    broker = _require_production()
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = _process_env(broker, redis_url, stream_key, settings)
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "storefront_demo", "worker", "--pool=solo", "-Q", queue,
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    # not the current app: shared tasks of this test process must stay on the project's (eager) app afterwards
    client = Celery("test-client", broker=broker, backend=broker, set_as_current=False)
    client.conf.task_default_queue = queue
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"celery worker exited early:\n{log.read_text()[-3000:]}")
            if "ready." in log.read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"celery worker did not start in 60 s:\n{log.read_text()[-3000:]}")
        client.worker_log = log
        client.worker_process = proc
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        client.close()


def _process_env(broker: str, redis_url: str, stream_key: str, settings: Any, **extra: str) -> dict[str, str]:
    """Environment of a worker, beat or web process started by a test: the test database, the Redis broker and
    event buffer, this test's stream key and MEDIA_ROOT (artifacts written there are read by the test)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "PERSONALIZATION_COLLECTOR": "redis",
        "REDIS_URL": redis_url,
        "PERSONALIZATION_TEST_STREAM_KEY": stream_key,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        **extra,
    }


def _database_url() -> str:
    s = connection.settings_dict
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    user = s.get("USER") or "postgres"
    return f"postgres://{user}@{host}:{port}/{s['NAME']}"


# --- a whole deployment: two web servers, an ingestion worker, a training worker and beat -------------------------
# Celery task routes come from the environment (DEPLOY_TASK_ROUTES, JSON) and are applied to the Celery app before
# the real command line runs: the demo settings read no routes of their own, so every process of the deployment
# (the senders: web servers and beat; the consumers: workers started with -Q) boots through this launcher.
_LAUNCH = """
import json, os, sys
from storefront_demo.celery import app
app.conf.task_routes = json.loads(os.environ["DEPLOY_TASK_ROUTES"])
program, sys.argv = sys.argv[1], sys.argv[1:]
if program == "gunicorn":
    from gunicorn.app.wsgiapp import run
else:
    from celery.__main__ import main as run
sys.exit(run())
"""


class DeploymentProcess:
    """One subprocess of the deployment with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, ready: str,
                 pass_fds: tuple[int, ...] = (), port: int | None = None):
        self.name, self.log, self.ready_marker, self.port = name, log, ready, port
        with log.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, *argv], cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, pass_fds=pass_fds, start_new_session=True)
        self.pid = self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 2500) -> str:
        return f"--- {self.name} (pid {self.pid}, {self.log}) ---\n{self.text()[-chars:]}"

    def is_ready(self) -> bool:
        if self.port is None:
            return self.ready_marker in self.text()
        import http.client

        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", self.ready_marker)
            status = conn.getresponse().status
            conn.close()
        except OSError:
            return False
        return status < 500

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # gunicorn: graceful stop of master and workers; celery: warm shutdown

    def stop(self) -> None:
        self.terminate()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)  # its own session: this process and its children only
                self.proc.wait(timeout=10)


class Deployment:
    """The processes of one deployment; ``fail()`` reports with every process's log."""

    def __init__(self, queues: dict[str, str]):
        self.queues = queues
        self.processes: dict[str, DeploymentProcess] = {}

    def __getitem__(self, name: str) -> DeploymentProcess:
        return self.processes[name]

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.processes.values())

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n{self.logs()}", pytrace=False)

    def check_alive(self) -> None:
        for p in self.processes.values():
            if p.proc.poll() is not None:
                self.fail(f"{p.name} exited with code {p.proc.returncode}")

    def wait_for(self, what: str, predicate, timeout: float, interval: float = 0.25):
        """Poll ``predicate()`` until it returns a truthy value; fail with ``what`` and the logs after ``timeout``."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            self.check_alive()
            try:
                value = predicate()
                last_error = None
            except Exception as exc:  # noqa: BLE001 - reported if it never succeeds
                value, last_error = None, exc
            if value:
                return value
            if time.monotonic() > deadline:
                extra = f" (last error: {last_error!r})" if last_error else ""
                self.fail(f"Timed out after {timeout:.0f} s waiting for {what}{extra}")
            time.sleep(interval)


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@pytest.fixture
def deployment(transactional_db, tmp_path, redis_url, stream_key, settings):
    """Two gunicorn servers (web1, web2), Celery workers on an ingestion and a training queue, and celery beat
    (django-celery-beat's DatabaseScheduler with the shipped flush entry only), all on the test database, Redis
    cache, broker and event buffer, and one MEDIA_ROOT. Stopped (and their logs kept in tmp_path) at the end."""
    broker = _require_production()
    cache_url = os.environ.get("CACHE_URL", "")
    if not cache_url.startswith(("redis", "rediscache")):
        pytest.fail("The deployment test needs a shared Redis cache (CACHE_URL=redis://...): the web servers learn "
                    "of a new live model through it. `make test-prod` sets it.")
    suffix = uuid.uuid4().hex[:8]
    queues = {"ingestion": f"ingestion-{suffix}", "training": f"training-{suffix}"}
    routes = {"personalization.flush_events": {"queue": queues["ingestion"]},
              "personalization.*": {"queue": queues["training"]},  # training, precompute, stats, notifications
              "*": {"queue": queues["training"]}}
    env = _process_env(broker, redis_url, stream_key, settings, CACHE_URL=cache_url,
                       DEPLOY_TASK_ROUTES=json.dumps(routes), PYTHONUNBUFFERED="1")
    # Beat (DatabaseScheduler) sends only the flush entry: the nightly retrain or a drift check firing while the test
    # runs would queue a model version the test does not expect. The rows exist since migrate (periodic_tasks).
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.filter(name="personalization-flush-events", enabled=True).exists()
    PeriodicTask.objects.exclude(name="personalization-flush-events").update(enabled=False)
    dep = Deployment(queues)
    sockets = []
    try:
        for name in ("web1", "web2"):
            sock = _listening_socket()
            sockets.append(sock)
            dep.processes[name] = DeploymentProcess(
                name, ["gunicorn", "--bind", f"fd://{sock.fileno()}", "--workers", "1", "--worker-class", "sync",
                       "--timeout", "120", "--log-level", "info", "--no-control-socket",  # two servers on one host
                       "storefront_demo.wsgi:application"],
                env, tmp_path / f"{name}.log", ready="/api/personalization/events/", pass_fds=(sock.fileno(),),
                port=sock.getsockname()[1])
        for kind, queue in queues.items():
            dep.processes[kind] = DeploymentProcess(
                kind, ["celery", "-A", "storefront_demo", "worker", "--pool=solo", "-Q", queue, "-n",
                       f"{kind}-{suffix}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle",
                       "-l", "INFO"], env, tmp_path / f"{kind}.log", ready="ready.")
        dep.processes["beat"] = DeploymentProcess(
            "beat", ["celery", "-A", "storefront_demo", "beat", "-l", "INFO",
                     "-s", str(tmp_path / "celerybeat-schedule")], env, tmp_path / "beat.log",
            ready="beat: Starting")
        for sock in sockets:
            sock.close()  # the servers hold their own copies
        dep.wait_for("the web servers, workers and beat to start",
                     lambda: all(p.is_ready() for p in dep.processes.values()), timeout=90, interval=0.3)
        yield dep
    finally:
        for sock in sockets:
            sock.close()
        for p in dep.processes.values():  # all at once: they shut down in parallel
            p.terminate()
        for p in dep.processes.values():
            p.stop()
