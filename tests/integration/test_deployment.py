"""A whole production deployment on one machine: what `make test-prod` proves about the three services together.

Two gunicorn servers (web1, web2: separate processes on their own loopback ports), a Celery worker consuming only
the ingestion queue (``personalization.flush_events``), another consuming only the training queue
(``personalization.train_models`` and the other tasks), and celery beat with the shipped ``BEAT_SCHEDULE``, all on the
PostgreSQL test database, the Redis cache, broker and event buffer, and one MEDIA_ROOT (fixture ``deployment``).

Events sent to web1 are buffered in Redis and reach PostgreSQL only through beat's 5-second flush on the ingestion
worker; a version queued by staff through web2 is trained by the training worker and goes live; both servers then
serve it without a restart, and a promotion or rollback made through one server is followed by the other.
"""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from io import StringIO
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.management import call_command

from personalization.models import Event, ModelVersion

pytestmark = pytest.mark.integration

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
API = "/api/personalization"
STAFF = ("deploy-staff", "deploy-password-1")


class Http:
    """Requests to one of the deployment's servers, with a cookie jar and optional basic auth."""

    def __init__(self, deployment, name: str, auth: tuple[str, str] | None = None):
        self.deployment, self.name, self.port = deployment, name, deployment[name].port
        self.cookies: dict[str, str] = {}
        self.auth = auth

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"User-Agent": UA, "Accept": "application/json"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        except OSError as exc:
            self.deployment.fail(f"{method} {path} on {self.name} failed: {exc!r}")
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def expect(self, method: str, path: str, status: int, body: Any = None) -> Any:
        got, payload = self.call(method, path, body)
        if got != status:
            self.deployment.fail(f"{method} {path} on {self.name}: HTTP {got}, expected {status}: {payload!r}")
        return payload


def _ran(deployment, worker: str, task: str) -> bool:
    """Whether ``worker``'s log shows ``task`` succeeding (Celery logs "Task <name>[<id>] succeeded in ...")."""
    return any(line.startswith("[") and f"Task {task}[" in line and "succeeded" in line
               for line in deployment[worker].text().splitlines())


def _served_version(server: Http, path: str) -> int | None:
    status, payload = server.call("GET", path)
    if status != 200:
        server.deployment.fail(f"GET {path} on {server.name}: HTTP {status}: {payload!r}")
    return payload["model_version"]


def _wait_serving(deployment, servers: list[Http], path: str, version: int, why: str) -> None:
    for server in servers:
        deployment.wait_for(f"{server.name} to serve model version {version} at {path} ({why}); it served "
                            f"{_served_version(server, path)}",
                            lambda server=server: _served_version(server, path) == version, timeout=20)


def _wait_trained(deployment, pk: int, timeout: float) -> ModelVersion:
    def done() -> ModelVersion | None:
        version = ModelVersion.objects.get(pk=pk)
        return version if version.status not in {ModelVersion.Status.QUEUED, ModelVersion.Status.TRAINING} else None

    version = deployment.wait_for(f"the training worker to train model version {pk}", done, timeout=timeout)
    if version.status not in {ModelVersion.Status.LIVE, ModelVersion.Status.READY}:
        deployment.fail(f"Version {pk} ended {version.status}: {version.error}")
    return version


def test_two_servers_follow_models_trained_and_promoted_in_the_background(deployment, stream_key, redis_url):
    call_command("demo", "--products", "40", "--visitors", "80", "--days", "20", "--seed", "4", "--no-progress",
                 "--no-train", stdout=StringIO())
    from django.contrib.auth.models import Permission

    staff = get_user_model().objects.create_user(STAFF[0], password=STAFF[1], is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(  # what the staff API checks per action
        content_type__app_label="personalization", codename__endswith="_modelversion"))
    web1, web2 = Http(deployment, "web1"), Http(deployment, "web2")
    staff1, staff2 = Http(deployment, "web1", auth=STAFF), Http(deployment, "web2", auth=STAFF)
    pids = {name: p.pid for name, p in deployment.processes.items()}
    products = sorted(Event.objects.exclude(item_key="").values_list("item_key", flat=True).distinct())[:12]

    # 1. Events through web1 are buffered in Redis, then beat's flush schedule drains them via the ingestion worker.
    events = [{"event": "view" if i % 4 else "add_to_cart", "item": products[i % len(products)],
               "event_id": str(uuid.uuid4())} for i in range(24)]
    accepted = web1.expect("POST", f"{API}/events/", 202, {"events": events})
    assert accepted["accepted"] == len(events), accepted
    assert "pvid" in web1.cookies, "web1 set no visitor cookie"
    ids = [uuid.UUID(e["event_id"]) for e in events]
    buffer = redis.Redis.from_url(redis_url)
    # the flush commits the events, then trims them from the buffer: wait for both
    deployment.wait_for("beat's 5 s flush schedule to move the buffered events into PostgreSQL",
                        lambda: Event.objects.filter(event_id__in=ids).count() == len(events)
                        and buffer.llen(stream_key) == 0, timeout=45)
    visitor = Event.objects.get(event_id=ids[0]).visitor_id
    assert visitor and Event.objects.filter(visitor_id=visitor).count() == len(events)
    assert "Sending due task personalization-flush-events" in deployment["beat"].text(), deployment.logs()
    assert _ran(deployment, "ingestion", "personalization.flush_events"), deployment.logs()
    assert not _ran(deployment, "training", "personalization.flush_events"), "flush ran on the training queue"

    # 2. Staff queue a version through web2; the training worker trains it and, the first one, makes it live.
    queued = staff2.expect("POST", f"{API}/models/train/", 202, {"models": ["popularity", "itemknn", "als"]})
    first = _wait_trained(deployment, queued["id"], timeout=300)
    assert first.status == ModelVersion.Status.LIVE, first.status
    deployment.wait_for("the training worker to log train_models as succeeded",
                        lambda: _ran(deployment, "training", "personalization.train_models"), timeout=30)
    assert not _ran(deployment, "ingestion", "personalization.train_models"), "training ran on the ingestion queue"

    # 3. Both servers serve it, for the visitor whose events went through the pipeline, without a restart.
    mine = f"{API}/recommendations/?n=5"
    for server in (web1, web2):
        server.cookies = dict(web1.cookies)  # the same visitor on both servers
    _wait_serving(deployment, [web1, web2], mine, first.pk, "first live version")
    for server in (web1, web2):
        payload = server.expect("GET", mine, 200)
        assert payload["fallback"] == "" and len(payload["items"]) == 5, (server.name, payload)
        assert payload["recommendation_id"]
        similar = server.expect("GET", f"{API}/items/{products[0]}/similar/?n=4", 200)
        assert similar["model_version"] == first.pk and similar["items"], (server.name, similar)
    listed = staff1.expect("GET", f"{API}/models/", 200)
    assert [v["id"] for v in listed if v["live"]] == [first.pk]

    # 4. A second version; promotion through web1 is followed by web2, rollback through web1 too, and back via web2.
    queued = staff1.expect("POST", f"{API}/models/train/", 202, {"models": ["popularity"]})
    second = _wait_trained(deployment, queued["id"], timeout=300)
    if second.status != ModelVersion.Status.LIVE:  # it did not beat the first: staff force it live
        promoted = staff1.expect("POST", f"{API}/models/{second.pk}/promote/", 200, {"force": True})
        assert promoted["live"] and promoted["id"] == second.pk
    _wait_serving(deployment, [web2, web1], mine, second.pk, "promoted through web1")

    restored = staff1.expect("POST", f"{API}/models/{second.pk}/rollback/", 200)
    assert restored["id"] == first.pk and restored["live"]
    _wait_serving(deployment, [web2, web1], mine, first.pk, "rolled back through web1")

    staff2.expect("POST", f"{API}/models/{second.pk}/promote/", 200, {"force": True})
    _wait_serving(deployment, [web1, web2], mine, second.pk, "promoted again through web2")
    assert ModelVersion.objects.get(pk=second.pk).status == ModelVersion.Status.LIVE

    # Nothing was restarted along the way, and no process logged an error.
    assert {name: p.pid for name, p in deployment.processes.items()} == pids
    deployment.check_alive()
    for name, process in deployment.processes.items():
        text = process.text()
        assert "Traceback" not in text and "ERROR" not in text, f"{name} logged an error:\n{process.tail(4000)}"
