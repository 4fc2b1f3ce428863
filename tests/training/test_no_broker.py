"""No broker, no problem: training and precompute run in a background thread when Celery cannot take them, and dead
or never-started runs are reaped (DESIGN rule 10).

The Celery app is the project's real one, pointed at a closed port (no broker reachable), a silent listener (a
broker that accepts and never answers) or kombu's in-memory transport (a broker with no worker).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core.checks import run_checks
from django.core.management import call_command
from django.utils import timezone

from personalization import background_runs, tasks, training, workers
from personalization.models import ModelVersion

CHANGELIST = "/admin/personalization/modelversion/"
TRAIN_URL = "/api/personalization/models/train/"


@pytest.fixture
def celery_broker():
    """Point the project's Celery app at a broker URL (no eager tasks) for one test; restored afterwards."""
    conf = tasks.train_models.app.conf
    saved = {"broker_url": conf.broker_url, "task_always_eager": conf.task_always_eager}

    def use(url: str) -> None:
        conf.update(broker_url=url, task_always_eager=False)

    yield use
    conf.update(saved)
    assert background_runs.wait(60), f"background runs still going: {background_runs.running()}"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.fixture
def silent_broker():
    """A port that accepts connections and never answers (a black-holed broker)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def stale_after(settings):
    def set_seconds(seconds: float) -> None:
        settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                    "TRAINING": {**settings.PERSONALIZATION.get("TRAINING", {}),
                                                 "stale_after_seconds": seconds,
                                                 "queued_after_seconds": seconds}}

    return set_seconds


# --- no broker reachable: the run happens in this process, the request answers at once --------------------------

def test_admin_retrain_without_a_broker_trains_in_a_thread(admin_client, shop_history, transactional_db,
                                                           celery_broker, closed_port, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PRECOMPUTE_ON_PROMOTION": True}
    celery_broker(f"redis://127.0.0.1:{closed_port}/0")
    started = time.monotonic()
    response = admin_client.post(f"{CHANGELIST}retrain/")
    elapsed = time.monotonic() - started
    assert response.status_code == 302 and elapsed < 3, elapsed
    message = " ".join(m.message for m in get_messages(response.wsgi_request))
    assert "training in this web process" in message and "unreachable" in message, message
    assert background_runs.wait(120)
    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.LIVE and version.heartbeat_at is not None, version.error
    assert version.task_id == ""
    # the promotion's precompute could not be queued either: it ran here too, and the promotion stood
    assert background_runs.reason_for(f"precompute-v{version.pk}")


@pytest.mark.parametrize("broker", ["closed", "silent"])
def test_api_train_without_a_broker_answers_202_fast_and_the_version_goes_live(
        admin_client, shop_history, transactional_db, celery_broker, closed_port, silent_broker, broker):
    port = closed_port if broker == "closed" else silent_broker
    celery_broker(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    response = admin_client.post(TRAIN_URL, {"models": ["popularity", "itemknn"]}, content_type="application/json")
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.content
    assert elapsed < 3.5, f"the request waited {elapsed:.1f} s on the broker"
    body = response.json()
    assert body["runs_in"] == "web process" and "unreachable" in body["detail"]
    assert background_runs.wait(120)
    version = ModelVersion.objects.get(pk=body["id"])
    assert version.status == ModelVersion.Status.LIVE, version.error


def test_eager_tasks_train_in_a_thread_not_inside_the_request(admin_client, shop_history, transactional_db):
    response = admin_client.post(TRAIN_URL, {"models": ["popularity"]}, content_type="application/json")
    assert response.status_code == 202 and response.json()["runs_in"] == "web process"
    assert "eagerly" in response.json()["detail"]
    assert background_runs.wait(120)
    assert ModelVersion.objects.get().status == ModelVersion.Status.LIVE


def test_train_command_background_without_a_broker_trains_here(shop_history, transactional_db, celery_broker,
                                                               closed_port):
    celery_broker(f"redis://127.0.0.1:{closed_port}/0")
    out, err = StringIO(), StringIO()
    call_command("personalization_train", "--background", "--models", "popularity", stdout=out, stderr=err)
    assert "No Celery worker can take version" in err.getvalue()
    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.LIVE and f"Version {version.pk}: live" in out.getvalue()


# --- a broker but no worker: the queued version is failed with a hint, and the next retrain is not blocked ------

def test_a_queued_version_no_worker_starts_is_failed_with_a_hint(admin_client, transactional_db, celery_broker,
                                                                 stale_after):
    celery_broker("memory://")  # publishing works; nobody consumes
    stale_after(2)
    response = admin_client.post(TRAIN_URL, {}, content_type="application/json")
    assert response.json()["runs_in"] == "worker"
    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.QUEUED and version.task_id
    assert tasks.scheduled_retrain() == 0  # still within the stale time: it waits for its worker
    time.sleep(2.2)
    assert tasks.reap_stale_runs() == [version.pk]  # the beat task
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.FAILED and version.finished_at is not None
    assert "No worker picked it up in" in version.error and "is a Celery worker running" in version.error
    queued = tasks.scheduled_retrain()
    assert queued and queued != version.pk
    assert ModelVersion.objects.get(pk=queued).status == ModelVersion.Status.QUEUED
    # a worker that gets the reaped version's task late leaves it failed
    tasks.train_models.apply(kwargs={"version_id": version.pk})
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.FAILED and not version.artifact


# --- a killed run ---------------------------------------------------------------------------------------------

def test_a_run_without_a_heartbeat_is_reaped_and_its_folder_removed(db):
    long_ago = timezone.now() - timedelta(hours=1)
    dead = ModelVersion.objects.create(status=ModelVersion.Status.TRAINING, started_at=long_ago,
                                       heartbeat_at=long_ago, stage="fit", progress=40)
    alive = ModelVersion.objects.create(status=ModelVersion.Status.TRAINING, started_at=long_ago,
                                        heartbeat_at=timezone.now())
    folder = Path(tempfile.mkdtemp(prefix=training.work_folder_prefix(dead.pk, dead.created_at)))
    (folder / "model.npz").write_bytes(b"partial")
    other = Path(tempfile.mkdtemp(prefix=training.work_folder_prefix(alive.pk, alive.created_at)))
    # another site's (or test database's) live run of a version with the same id keeps its folder
    namesake = Path(tempfile.mkdtemp(prefix=training.work_folder_prefix(dead.pk, timezone.now())))
    try:
        assert training.in_progress()  # the live run still counts
        dead.refresh_from_db()
        assert dead.status == ModelVersion.Status.FAILED and dead.finished_at is not None
        assert "no heartbeat since" in dead.error and "process probably died" in dead.error
        assert not folder.exists() and other.exists() and namesake.exists()
        alive.refresh_from_db()
        assert alive.status == ModelVersion.Status.TRAINING
    finally:
        for path in (folder, other, namesake):
            shutil.rmtree(path, ignore_errors=True)


def test_the_nightly_retrain_is_not_blocked_by_a_dead_run(db, django_capture_on_commit_callbacks):
    ModelVersion.objects.create(status=ModelVersion.Status.TRAINING, started_at=timezone.now() - timedelta(days=1))
    with django_capture_on_commit_callbacks(execute=False):
        queued = tasks.scheduled_retrain()
    assert queued and ModelVersion.objects.get(pk=queued).status == ModelVersion.Status.QUEUED


def test_a_live_run_keeps_its_heartbeat_fresh_between_reports(transactional_db, monkeypatch):
    monkeypatch.setattr(training, "HEARTBEAT_SECONDS", 0.05)
    version = ModelVersion.objects.create(status=ModelVersion.Status.TRAINING, started_at=timezone.now())
    progress = training.Progress(version)
    progress("fit", 0.3)
    first = ModelVersion.objects.get(pk=version.pk).heartbeat_at
    time.sleep(0.3)  # a long stage: no report
    assert ModelVersion.objects.get(pk=version.pk).heartbeat_at > first
    name = f"personalization-heartbeat-v{version.pk}"
    del progress  # the run ended: its heartbeat thread stops
    deadline = time.monotonic() + 5
    while any(t.name == name for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == name for t in threading.enumerate())


# --- cancel ---------------------------------------------------------------------------------------------------

def test_cancel_of_a_queued_version_is_immediate_and_its_task_skips_it(admin_client, transactional_db,
                                                                      celery_broker):
    celery_broker("memory://")
    response = admin_client.post(TRAIN_URL, {}, content_type="application/json")
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == ModelVersion.Status.QUEUED and version.task_id
    admin_client.post(CHANGELIST, {"action": "cancel_training", "_selected_action": [version.pk]})
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.CANCELLED and version.finished_at is not None
    tasks.train_models.apply(kwargs={"version_id": version.pk})  # a worker that got the task anyway
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.CANCELLED and not version.artifact


def test_cancel_of_a_training_version_asks_it_to_stop(db):
    version = ModelVersion.objects.create(status=ModelVersion.Status.TRAINING, started_at=timezone.now())
    assert training.cancel(ModelVersion.objects.all()) == 1
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.TRAINING and version.cancel_requested


# --- the system check -----------------------------------------------------------------------------------------

def _ids() -> set[str]:
    return {m.id for m in run_checks()}


def test_w004_warns_when_a_broker_is_configured_but_no_worker_was_seen(db, celery_broker):
    assert "personalization.W004" not in _ids()  # eager tasks: no worker to miss
    celery_broker("memory://")
    started = time.monotonic()
    found = [m for m in run_checks() if m.id == "personalization.W004"]
    assert time.monotonic() - started < 5
    assert found and "no worker has ever been seen" in found[0].msg
    workers.mark_seen(force=True)  # what a worker does when it starts, beats and runs tasks
    assert "personalization.W004" not in _ids()


def test_e020_rejects_a_bad_staleness_limit(db, stale_after):
    stale_after(0)
    assert "personalization.E020" in _ids()
