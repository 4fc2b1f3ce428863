"""Production path: a training worker killed mid-run is reaped by its stale heartbeat; a live worker is seen.

A real Celery worker on PostgreSQL and Redis (tests/integration/conftest.py). DESIGN rule 10: nothing stays "in
progress" forever.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.checks import run_checks
from django.core.management import call_command

from personalization import tasks, training, workers
from personalization.models import ModelVersion

pytestmark = pytest.mark.integration


def _wait(what, predicate, timeout, log):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"Timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def test_a_killed_training_run_is_reaped_and_its_work_folder_removed(celery_worker_process, settings):
    call_command("demo", "--products", "60", "--visitors", "200", "--days", "30", "--seed", "5", "--no-progress",
                 "--no-train", stdout=StringIO())
    version = ModelVersion.objects.create()
    celery_worker_process.send_task("personalization.train_models",
                                     kwargs={"version_id": version.pk, "models": ["popularity", "itemknn", "als"]})
    def work_folders() -> list[Path]:
        return list(Path(tempfile.gettempdir()).glob(f"personalization-v{version.pk}-*"))

    _wait("the worker to start training", lambda: work_folders() and ModelVersion.objects.filter(
        pk=version.pk, status=ModelVersion.Status.TRAINING).exists(), 120, celery_worker_process.worker_log)
    os.kill(celery_worker_process.worker_process.pid, signal.SIGKILL)  # the run dies mid-way
    celery_worker_process.worker_process.wait(timeout=10)
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.TRAINING and version.finished_at is None
    assert version.heartbeat_at is not None

    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "TRAINING": {**settings.PERSONALIZATION.get("TRAINING", {}), "stale_after_seconds": 2}}
    time.sleep(2.5)
    assert tasks.reap_stale_runs() == [version.pk]
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.FAILED and "no heartbeat since" in version.error
    assert not work_folders()
    assert not training.in_progress()


@pytest.fixture
def project_celery_on_the_test_broker():
    """The project's Celery app sends through the test broker (not eagerly) for one test."""
    conf = tasks.train_models.app.conf
    saved = {"broker_url": conf.broker_url, "task_always_eager": conf.task_always_eager}
    conf.update(broker_url=os.environ["TEST_CELERY_BROKER_URL"], task_always_eager=False)
    yield
    conf.update(saved)


def test_a_running_worker_is_seen_and_w004_stays_quiet(celery_worker_process, project_celery_on_the_test_broker):
    assert workers.last_seen() is not None  # stamped by the worker when it became ready
    assert "personalization.W004" not in {m.id for m in run_checks()}
    caches["default"].delete(workers.WORKER_SEEN_KEY)  # as if no worker had ever run
    assert "personalization.W004" in {m.id for m in run_checks()}
