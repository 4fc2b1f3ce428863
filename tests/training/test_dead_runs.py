"""A training run whose process dies (``kill -9``) never blocks retraining: the next trigger marks it failed and
removes its work folder, and "Cancel training" closes a run whose heartbeat stopped (DESIGN rule 10).

The kill test runs real processes (``manage.py personalization_train``) on a SQLite file of its own, so it needs no
service and leaves the test database alone.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from personalization import training
from personalization.models import ModelVersion

ROOT = Path(__file__).resolve().parents[2]
STALE_AFTER = 3  # seconds (TRAINING['stale_after_seconds'] of the processes below)


@pytest.fixture
def site(tmp_path):
    """Environment of ``manage.py`` processes on a fresh SQLite file with a simulated shop; returns (env, db)."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "dead_run_settings.py").write_text(
        "from tests.settings import *  # noqa\n"
        "PERSONALIZATION = {**PERSONALIZATION, 'TRAINING': {**PERSONALIZATION.get('TRAINING', {}), "  # noqa
        f"'stale_after_seconds': {STALE_AFTER}}}}}\n")
    db = tmp_path / "site.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CELERY_", "TEST_CELERY_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "dead_run_settings", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DATABASE_URL": f"sqlite:///{db}", "CACHE_URL": "locmemcache://", "CELERY_BROKER_URL": "",
        "PERSONALIZATION_COLLECTOR": "database", "MEDIA_ROOT": str(tmp_path / "media"),
        "TMPDIR": str(tmp_path / "tmp"),  # where a run's work folder goes
    })
    for args in (["migrate", "-v0"], ["demo", "--products", "40", "--visitors", "80", "--days", "20", "--seed", "3",
                                       "--no-progress", "--no-train"]):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True,
                       timeout=300)
    return env, db


def rows(db: Path) -> dict[int, dict]:
    with sqlite3.connect(db, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in conn.execute(
            "SELECT id, status, progress, stage, error, finished_at FROM personalization_modelversion")}


@pytest.mark.slow
def test_a_killed_run_is_failed_by_the_next_trigger_and_a_new_run_goes_live(site, tmp_path):
    env, db = site
    run = subprocess.Popen([sys.executable, "manage.py", "personalization_train", "-v0"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # kill it in the middle of its work
            found = [r for r in rows(db).values() if r["status"] == "training" and (r["progress"] or 0) >= 30]
            if found or run.poll() is not None:
                break
            time.sleep(0.05)
        assert found, f"the run never got to 30% (exit code {run.poll()})"
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
    finally:
        if run.poll() is None:
            run.kill()
    dead = found[0]["id"]
    folders = list((tmp_path / "tmp").glob(f"personalization-v{dead}-*"))
    assert folders, "the killed run left its work folder behind (as a real kill does)"
    assert rows(db)[dead]["status"] == "training"  # nothing closes it by itself

    time.sleep(STALE_AFTER + 0.5)
    trigger = ("import json; from personalization import background_runs, tasks; "
               "queued = tasks.scheduled_retrain(); background_runs.wait(300); print(json.dumps(queued))")
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", trigger], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=300)
    queued = json.loads(out.stdout.strip().splitlines()[-1])
    after = rows(db)
    assert after[dead]["status"] == "failed" and after[dead]["finished_at"], after[dead]
    assert "no heartbeat since" in after[dead]["error"]
    assert not any(folder.exists() for folder in folders)
    assert queued and queued != dead, "the nightly retrain was blocked by the dead run"
    assert after[queued]["status"] == "live", after[queued]


# --- cancel -------------------------------------------------------------------------------------------------------

def _training(beat_seconds_ago: float) -> ModelVersion:
    beat = timezone.now() - timedelta(seconds=beat_seconds_ago)
    return ModelVersion.objects.create(status=ModelVersion.Status.TRAINING, started_at=beat, heartbeat_at=beat,
                                       stage="fit", progress=40)


def test_cancel_closes_a_run_whose_heartbeat_stopped(db, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    silent = _training(beat_seconds_ago=3 * training.heartbeat_seconds() + 5)  # missed three beats: gone
    folder = tmp_path / f"{training.work_folder_prefix(silent.pk, silent.created_at)}abc"
    folder.mkdir()
    assert training.cancel(ModelVersion.objects.filter(pk=silent.pk)) == 1
    silent.refresh_from_db()
    assert silent.status == ModelVersion.Status.FAILED and silent.finished_at is not None
    assert "process is gone" in silent.error
    assert not folder.exists()
    assert not training.in_progress()


def test_cancel_only_flags_a_run_that_is_alive(db):
    alive = _training(beat_seconds_ago=1)
    assert training.cancel(ModelVersion.objects.filter(pk=alive.pk)) == 1
    alive.refresh_from_db()
    assert alive.status == ModelVersion.Status.TRAINING and alive.cancel_requested  # it stops at its next stage


def test_the_default_limit_is_two_minutes_and_runs_beat_often_enough(settings):
    assert training.stale_after() == timedelta(minutes=2)
    assert training.heartbeat_seconds() <= 20
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"stale_after_seconds": 6}}
    assert training.heartbeat_seconds() == 1.0  # six beats per limit, whatever the limit


def test_a_queued_version_waits_for_a_busy_worker_longer_than_a_silent_run(db):
    """Queued behind a long run, a version is not "never picked up" after the 2-minute heartbeat limit."""
    five_minutes_ago = timezone.now() - timedelta(minutes=5)
    queued = ModelVersion.objects.create(status=ModelVersion.Status.QUEUED)
    ModelVersion.objects.filter(pk=queued.pk).update(created_at=five_minutes_ago)
    silent = _training(beat_seconds_ago=5 * 60)
    assert training.reap_stale_runs() == [silent.pk]
    queued.refresh_from_db()
    assert queued.status == ModelVersion.Status.QUEUED
    assert training.reap_stale_runs(now=timezone.now() + timedelta(minutes=11)) == [queued.pk]
