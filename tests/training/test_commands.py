"""personalization_train / personalization_evaluate and the training Celery task."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from personalization.models import ModelVersion


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_train_command_trains_and_reports(shop_history):
    output = run("personalization_train", "--models", "popularity,itemknn")
    version = ModelVersion.objects.get()
    assert f"Version {version.pk}: live" in output and "ndcg@10=" in output
    assert set(version.params["models"]) == {"popularity", "itemknn"}


def test_train_command_rejects_bad_input_with_hints(db):
    with pytest.raises(CommandError, match="Unknown model"):
        run("personalization_train", "--models", "als,deep-magic")
    with pytest.raises(CommandError, match="not a date"):
        run("personalization_train", "--until", "yesterday")
    with pytest.raises(CommandError, match="usable events"):
        run("personalization_train")


def test_train_until_leaves_later_events_out(shop_history):
    from personalization.models import Event

    times = sorted(Event.objects.values_list("occurred_at", flat=True))
    until = times[len(times) * 3 // 4]
    run("personalization_train", "--until", until.isoformat(), "--models", "popularity")
    version = ModelVersion.objects.get()
    assert version.data_end < until


def test_evaluate_command_prints_every_model_and_json(trained):
    table = run("personalization_evaluate")
    assert f"Version {trained.pk} (live)" in table
    lines = {line.split()[0] for line in table.splitlines()[2:]}
    assert {"system", "als", "popularity"} <= lines
    data = json.loads(run("personalization_evaluate", "--json"))
    assert data["version"] == trained.pk and data["metrics"]["system"]["ndcg@10"] > 0


def test_evaluate_command_errors_clearly(db):
    with pytest.raises(CommandError, match="personalization_train"):
        run("personalization_evaluate")
    with pytest.raises(CommandError, match="No model version 99"):
        run("personalization_evaluate", "99")


def test_enqueued_training_runs_in_a_thread_with_eager_tasks(shop_history, transactional_db):
    from personalization import background_runs
    from personalization.training import enqueue, runs_here

    version = enqueue(models=["popularity"])  # autocommit: handed over at once
    assert "eagerly" in runs_here(version)
    assert background_runs.wait(120)
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.LIVE
    assert not version.task_id  # no Celery task: tests/integration covers the worker


def test_scheduled_retrain_does_not_pile_up(shop_history, django_capture_on_commit_callbacks):
    from personalization.tasks import scheduled_retrain

    ModelVersion.objects.create(status=ModelVersion.Status.TRAINING)
    assert scheduled_retrain() == 0
    assert ModelVersion.objects.count() == 1
